"""What the tests share: waiting for a condition (`waiting`), the local stack and the app's settings and services on
it (`stack`), the messages the app writes (`messages`), and the fixtures built on them (`fixtures`, registered by
tests/conftest.py for every test)."""
