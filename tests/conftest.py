def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", help="more trials in the damaged-files battery")
