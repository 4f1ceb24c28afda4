# Pants BUILD prelude (pants.toml [GLOBAL].build_file_prelude_globs): the targets every
# component has, so each component's BUILD file is one call plus what is its own.


def mcpmesh_component(test_dependencies=(), test_overrides=None):
    """Sources, tests and test helpers of one component (proto, a lib, a service, tools).

    Globs are recursive, so new modules and tests are picked up without editing BUILD files.
    Tests are not type-checked: every component has its own tests/ folder, so test module
    names (tests.test_x) repeat across components and mypy refuses duplicates in one run.
    """
    python_sources(
        name="src",
        sources=["**/*.py", "!**/test_*.py", "!**/*_test.py", "!**/conftest.py", "!tests/**/*.py"],
    )
    python_tests(
        name="tests",
        sources=["**/test_*.py", "**/*_test.py"],
        skip_mypy=True,
        # conftest.py, helpers and scripts in tests/ (some are run, not imported).
        dependencies=[":test_utils", *test_dependencies],
        overrides=test_overrides or {},
    )
    python_test_utils(
        name="test_utils",
        sources=["**/conftest.py", "tests/**/*.py", "!**/test_*.py", "!**/*_test.py"],
        skip_mypy=True,
    )
