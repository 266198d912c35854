"""The plugin's decoded-steps cache."""

from torch_visualization.tb_plugin.step_cache import StepCache


def test_hit_only_at_the_same_version():
    cache = StepCache(max_bytes=100)
    cache.put("k", (1, 2.0), "value", 10)
    assert cache.get("k", (1, 2.0)) == "value"
    assert cache.get("k", (2, 3.0)) is None
    assert cache.get("other", (1, 2.0)) is None


def test_evicts_least_recently_used_past_the_byte_bound():
    cache = StepCache(max_bytes=100)
    cache.put("a", 1, "A", 40)
    cache.put("b", 1, "B", 40)
    assert cache.get("a", 1) == "A"  # a is now the most recent
    cache.put("c", 1, "C", 40)
    assert cache.get("b", 1) is None
    assert (cache.get("a", 1), cache.get("c", 1)) == ("A", "C")
    assert cache.nbytes == 80


def test_replacing_a_key_frees_its_bytes_and_oversize_is_not_kept():
    cache = StepCache(max_bytes=100)
    cache.put("a", 1, "A", 60)
    cache.put("a", 2, "A2", 30)
    assert cache.nbytes == 30 and cache.get("a", 2) == "A2"
    cache.put("huge", 1, "H", 101)
    assert cache.get("huge", 1) is None and cache.nbytes == 30
