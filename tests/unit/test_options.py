"""bcfg2.conf parsing: upstream names and defaults, overrides, clear errors."""
import pytest

from bcfg2_cherry.options import OptionError, Settings


def write(tmp_path, text):
    path = tmp_path / "bcfg2.conf"
    path.write_text(text)
    return str(path)


def test_defaults_without_file(tmp_path):
    s = Settings(str(tmp_path / "missing.conf"))
    assert s.repository == "/var/lib/bcfg2"
    assert s.plugins == ["Bundler", "Cfg", "Metadata", "Pkgmgr", "Rules", "SSHbase"]
    assert s.umask == 0o077
    assert s.fam_blocking is True
    assert s.server_url == "https://localhost:6789"
    assert s.authentication == "cert+password"
    assert s.cache_mode == "off"
    assert s.mdata == {"owner": "root", "group": "root", "mode": "644",
                       "secontext": "__default__", "important": "false",
                       "paranoid": "true", "sensitive": "false"}
    assert s.backend == "cherrypy"
    assert s.max_request_size == 64 * 1024 * 1024


def test_file_values_and_repository_substitution(tmp_path):
    conf = write(tmp_path, "[server]\nrepository = %s/repo\nplugins = Metadata,Cfg ,  Rules\n"
                 "umask = 0022\nvcs_root = <repository>/sub\nbackend = best\n"
                 "[caching]\nclient_metadata = on\n[communication]\npassword = a%%%%b\n"
                 "[components]\nbcfg2 = https://127.0.0.1:7000\n[rules]\nregex = yes\n"
                 "[encryption]\nsite = secret\n" % tmp_path)
    s = Settings(conf)
    assert s.repository == str(tmp_path / "repo")
    assert s.plugins == ["Metadata", "Cfg", "Rules"]
    assert s.umask == 0o022
    assert s.vcs_root == str(tmp_path / "repo" / "sub")
    assert s.backend == "builtin"
    assert s.cache_mode == "cautious"
    assert s.password == "a%b"
    assert s.url == ("https", "127.0.0.1", 7000)
    assert s.getbool("rules", "regex") is True
    assert s.getbool("defaults", "replace_name") is False
    assert s.items("encryption") == {"site": "secret"}


def test_command_line_beats_file(tmp_path):
    conf = write(tmp_path, "[server]\nrepository = /a\n[logging]\ndebug = no\n")
    s = Settings(conf, {"repository": "/b", "debug": True, "plugins": "Metadata"})
    assert s.repository == "/b" and s.debug is True and s.plugins == ["Metadata"]


@pytest.mark.parametrize("text,message", [
    ("[server]\numask = 9z\n", "[server] umask = 9z: expected an octal number"),
    ("[server]\nfam_blocking = maybe\n", "[server] fam_blocking = maybe: expected a boolean"),
    ("[server]\nchildren = many\n", "[server] children = many: expected an integer"),
    ("[server]\ntrusted_proxies = 10.0.0.0/8, nonsense\n", "[server] trusted_proxies"),
    ("[communication]\npassword = 100%\n", "password"),
    ("not an ini file\n", "bcfg2.conf"),
])
def test_bad_values_name_file_section_option(tmp_path, text, message):
    conf = write(tmp_path, text)
    with pytest.raises(OptionError) as err:
        Settings(conf)
    assert message in str(err.value)
    assert conf in str(err.value) or "command line" in str(err.value)


def test_reload_rereads(tmp_path):
    conf = write(tmp_path, "[server]\nrepository = /a\n")
    s = Settings(conf)
    (tmp_path / "bcfg2.conf").write_text("[server]\nrepository = /c\n")
    s.reload()
    assert s.repository == "/c"


def test_unknown_cache_mode_behaves_as_off(tmp_path, caplog):
    s = Settings(write(tmp_path, "[caching]\nclient_metadata = sometimes\n"))
    assert s.cache_mode == "off"
    assert "client_metadata = sometimes" in caplog.text


def test_url_needs_port(tmp_path):
    s = Settings(write(tmp_path, "[components]\nbcfg2 = https://host\n"))
    with pytest.raises(OptionError, match="explicit port"):
        s.url  # noqa: B018  (the property raises)
