# A package, so that pytest imports tests/nat/conftest.py as `nat.conftest` and leaves
# `conftest` meaning tests/conftest.py (`from conftest import require` keeps working
# everywhere, here included).
