"""Several hosts in one sweep: one file, one host per row, each host's path MTU in meta."""
from udpbench.output import results
from udpbench.measure.sweep import sweep


def test_two_hosts_in_one_file(tmp_path):
    done = sweep(["127.0.0.1", "127.0.0.2"], sizes=[64, 3000], duration=0.2, rate=5e6, engine="send",
                 port=1, output=tmp_path / "two")
    meta, rows, saved = done.meta, done.rows, done.path
    assert [(r["host"], r["size"]) for r in rows] == [
        ("127.0.0.1", 64), ("127.0.0.1", 3000), ("127.0.0.2", 64), ("127.0.0.2", 3000)]
    assert [h["host"] for h in meta["hosts"]] == ["127.0.0.1", "127.0.0.2"]
    assert all(h["path_mtu"] >= 1280 for h in meta["hosts"])
    loaded_meta, loaded = results.load(saved)
    assert [r["host"] for r in loaded] == [r["host"] for r in rows]
    assert [r["received"] for r in loaded] == [r["received"] for r in rows]
    assert loaded_meta["hosts"] == meta["hosts"]
    for row in rows:
        assert row["received"] == row["sent"] > 0
