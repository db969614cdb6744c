"""The ``aos`` command line (``python -m aos``)."""

from __future__ import annotations

import sys

import click

from aos.errors import AosError

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aos-kernel")
def cli() -> None:
    """aos: a deterministic, event-sourced world kernel."""


@cli.command()
@click.argument("directory", default="aos-demo.world", type=click.Path(file_okay=False))
@click.option("--orders", default=3000, show_default=True, help="Number of orders to place.")
@click.option("--durability", type=click.Choice(["group", "always", "none"]), default="group",
              show_default=True, help="Journal durability policy.")
def demo(directory: str, orders: int, durability: str) -> None:
    """Run the shop demo world in DIRECTORY and verify it by replay."""
    from aos.demo import run_demo

    s = run_demo(directory, orders=orders, durability=durability)
    ok = s.snapshot_hash == s.replay_hash
    click.echo(f"world          {s.path.resolve()}")
    click.echo(f"events         {s.events} admitted")
    click.echo(f"steps          {s.steps} ({s.failed} failed)")
    click.echo(f"cells          {s.cells}")
    click.echo(f"ledger         {s.ledger}")
    click.echo(f"effects        {s.effects} intended, {s.receipts} receipts (invoices in blobs/, timers)")
    click.echo(f"snapshot hash  {s.snapshot_hash}")
    click.echo(f"seconds        {s.seconds:.2f} ({s.steps / s.seconds:,.0f} steps/s, durability {durability})")
    click.echo(f"replay         {'verified' if ok else 'DIVERGED'}: {s.replay_hash} "
               f"in {s.replay_seconds:.2f} s")
    if not ok:
        sys.exit(1)


def main() -> None:
    try:
        rc = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (AosError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)
