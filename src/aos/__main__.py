from aos.cli import main

main()
