"""A built wheel carries the demo repository, and the installed package finds it:
`pip install . && bcfg2-cherry serve --demo` must work without the source tree."""
import os
import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_wheel_ships_conf_and_resources_find_it(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path / "dist"), ROOT],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("bcfg2_cherry-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for needed in ("bcfg2_cherry/_conf/demo.conf",
                       "bcfg2_cherry/_conf/demo-repo/Metadata/clients.xml",
                       "bcfg2_cherry/_conf/bcfg2.conf",
                       "bcfg2_cherry/_conf/nginx/bcfg2-cherry.conf"):
            assert needed in names
        zf.extractall(tmp_path / "site")
    found = subprocess.run(
        [sys.executable, "-I", "-c",
         "import sys; sys.path.insert(0, %r); from bcfg2_cherry import resources; "
         "print(resources.demo_repository()); print(resources.demo_config())"
         % str(tmp_path / "site")],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert found.returncode == 0, found.stderr
    repo, conf = found.stdout.split()
    assert repo == os.path.join(str(tmp_path / "site"), "bcfg2_cherry", "_conf", "demo-repo")
    assert os.path.isfile(conf)
