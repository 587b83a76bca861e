"""The `abdr` command line (app.py assembles it): one module per noun, the options
several commands share (options.py), output (render.py), waiting (progress.py), and the
plan fields' compact grammar (grammar.py) apart from plan options and files."""


def main() -> None:
    """The `abdr` entry point (`starter.cli:main`); imported lazily so that importing a
    sibling (grammar, render) does not build the whole command tree."""
    from starter.cli.app import main as run

    run()
