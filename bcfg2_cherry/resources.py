"""Where the files shipped beside the code are: conf/ with the demo repository."""
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def conf_dir():
    """The shipped ``conf/`` directory: inside the installed package, or the source
    checkout's ``conf/`` for an editable install.
    """
    for candidate in (os.path.join(_HERE, "_conf"),
                      os.path.join(os.path.dirname(_HERE), "conf")):
        if os.path.isdir(os.path.join(candidate, "demo-repo")):
            return candidate
    raise FileNotFoundError("the bundled conf/ directory (demo repository) is missing "
                            "from this installation")


def demo_repository():
    """Path of the bundled demo repository (read-only: copy it before serving)."""
    return os.path.join(conf_dir(), "demo-repo")


def demo_config():
    """Path of the bcfg2.conf the demo mode starts from."""
    return os.path.join(conf_dir(), "demo.conf")
