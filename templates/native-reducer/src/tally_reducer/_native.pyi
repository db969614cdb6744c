# The names the extension (_native.pyx) exports, for type checkers.
CODE_ID: str
MILESTONE: str
REDUCER: object  # a PyCapsule named "aos.reducer.v1"
