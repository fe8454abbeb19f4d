"""One folder per op: the math once in ``reference.py``, each fast backend beside it, dispatch in ``__init__``."""
