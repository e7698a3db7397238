from pathlib import Path

import pytest

from gitserve import settings as s


def test_defaults_without_file(tmp_path: Path) -> None:
    st = s.load(tmp_path)
    assert st.home == tmp_path.resolve()
    assert st.repos_dir == tmp_path.resolve() / "repositories"
    assert st.admin_repo.name == "gitolite-admin.git"
    assert st.effective_redis_url == f"unix://{tmp_path.resolve()}/run/redis.sock"
    assert st.listen_host_port() == ("127.0.0.1", 2222)


def test_round_trip(tmp_path: Path) -> None:
    st = s.load(tmp_path)
    st.server.listen = "0.0.0.0:2200"
    st.server.idle_timeout = 12.5
    st.redis.url = "redis://127.0.0.1:6380/0"
    st.builds.workers = 4
    s.write(st)
    again = s.load(tmp_path)
    assert again.server.listen == "0.0.0.0:2200"
    assert again.server.idle_timeout == 12.5
    assert again.effective_redis_url == "redis://127.0.0.1:6380/0"
    assert again.builds.workers == 4
    assert not list(tmp_path.glob("*.tmp"))


def test_env_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITSERVE_HOME", str(tmp_path / "h"))
    assert s.resolve_home() == (tmp_path / "h").resolve()
    assert s.resolve_home(tmp_path) == tmp_path.resolve()


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[server]\nlisten = 5\n", "[server] listen must be str"),
        ("[server]\nbogus = 1\n", "unknown setting [server] bogus"),
        ("[nope]\nx = 1\n", "unknown section [nope]"),
        ("[server\n", "gitserve.toml"),
        ("[builds]\nworkers = true\n", "[builds] workers must be int"),
    ],
)
def test_bad_settings_one_line_error(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "gitserve.toml").write_text(text)
    with pytest.raises(s.SettingsError) as err:
        s.load(tmp_path)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
