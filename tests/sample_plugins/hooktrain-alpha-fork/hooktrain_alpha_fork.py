"""Sample plugin: a second distribution whose entry point is also named ``alpha``."""

from hooktrain import hookimpl


@hookimpl
def on_log(logs):
    pass
