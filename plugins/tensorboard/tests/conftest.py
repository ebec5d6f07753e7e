pytest_plugins = ["hooktrain.testing"]
