pytest_plugins = ["mcpmesh.dev.pytest_plugin"]
