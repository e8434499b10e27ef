"""The key table reaches everything that reads settings: the settings object, the tab's
fields, the README, and (through load_settings) the API and the CLI's --set."""
from __future__ import annotations

import re
from collections import Counter

import pytest
from helpers import BAD, ROOT

from deforum_wan.config import settings as settings_module
from deforum_wan.config.keys import BY_NAME, KEYS, WAN_DEFAULTS, markdown_table
from deforum_wan.config.presets import FIELDS as PRESET_FIELDS
from deforum_wan.config.presets import PRESETS, TABLE
from deforum_wan.config.settings import load_settings
from deforum_wan.errors import SettingsError
from deforum_wan.webui.fields import FIELD_KEYS, WAN_FIELDS, fields_to_settings, settings_to_fields

README = ROOT / "README.md"
PRESETS_DOC = ROOT / "docs" / "presets.md"
BASE = {"max_frames": 8, "prompts": {"0": "a lighthouse"}, "W": 64, "H": 64}
# Values each kind must refuse (a text or model key takes any string; the model is then looked up).


def _value_in_settings(key, settings):
    if key.attr is None:
        return settings.speed_overrides.get(key.preset_field)
    value = getattr(settings, key.attr)
    return getattr(value, "id", value)  # a model key holds the registry entry


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.name)
def test_every_key_reaches_the_settings_object(key):
    assert key.example is not None and key.example != key.default, "every row needs a valid non-default example"
    default = load_settings(dict(BASE))
    changed = load_settings(dict(BASE, **{key.name: key.example}))
    assert _value_in_settings(key, changed) == key.read(key.example)
    assert _value_in_settings(key, changed) != _value_in_settings(key, default)
    # and it is written back into the run's settings file
    assert changed.to_dict()[key.name] == key.example
    assert default.to_dict()[key.name] == key.default


class _CountingDict(dict):
    """A settings dict that counts each read of a key's value."""

    def __init__(self, *args):
        super().__init__(*args)
        self.reads: Counter = Counter()

    def __getitem__(self, key):
        self.reads[key] += 1
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.reads[key] += 1
        return super().get(key, default)


@pytest.mark.parametrize("given", ["defaults", "examples"])
def test_load_settings_reads_each_wan_key_once(given, monkeypatch):
    read: list[_CountingDict] = []
    convert = settings_module._convert_legacy

    def counted(data, warnings):  # the dict every key is read from, after legacy conversion
        read.append(_CountingDict(convert(data, warnings)))
        return read[-1]

    monkeypatch.setattr(settings_module, "_convert_legacy", counted)
    data = dict(BASE, zoom="0: (1.02)")  # a moving camera: wan_camera's value matters
    if given == "examples":
        data.update({k.name: k.example for k in KEYS})
    load_settings(data)
    assert {k: n for k, n in read[0].reads.items() if k in BY_NAME} == {k.name: 1 for k in KEYS}


@pytest.mark.parametrize("key", [k for k in KEYS if k.kind in BAD], ids=lambda k: k.name)
def test_every_checked_key_refuses_a_bad_value_in_one_line(key):
    with pytest.raises(SettingsError) as err:
        load_settings(dict(BASE, **{key.name: BAD[key.kind]}))
    assert key.name in str(err.value) or "unknown model" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key", [k for k in KEYS if k.field], ids=lambda k: k.name)
def test_every_field_key_reaches_the_tab_and_comes_back(key):
    assert FIELD_KEYS[key.field] == key.name and key.field in WAN_FIELDS
    shown = settings_to_fields({key.name: key.example})[key.field]
    assert shown != settings_to_fields({})[key.field]
    # with the fields showing the example (the control field's video is the video field's)
    written = fields_to_settings({**settings_to_fields({key.name: key.example}), key.field: shown}, base={})
    assert key.read(written[key.name]) == key.read(key.example)


def test_the_tab_has_no_wan_field_outside_the_table():
    wan_keys = {v for v in FIELD_KEYS.values() if v.startswith("wan_")}
    assert wan_keys == {k.name for k in KEYS if k.field}


def test_defaults_and_preset_fields_agree_with_the_presets():
    assert WAN_DEFAULTS == {k.name: k.default for k in KEYS} and len(BY_NAME) == len(KEYS)
    assert tuple(TABLE) == PRESETS
    assert {k.preset_field for k in KEYS if k.preset_field} == set(PRESET_FIELDS)


def test_readme_settings_table_is_the_key_table():
    text = README.read_text(encoding="utf-8")
    assert markdown_table() in text, (
        "README's Wan key table differs from config/keys.py; run python -m deforum_wan.cli.usage --write")
    documented = set(re.findall(r"^\| `(wan_\w+)` \|", text, re.M))
    assert documented == set(BY_NAME)
    # docs/presets.md names exactly the keys that override a preset
    text = PRESETS_DOC.read_text(encoding="utf-8")
    section = text[text.index("Keys that override a preset"):text.index("Limits, all reported")]
    assert set(re.findall(r"`(wan_\w+)`", section)) == {k.name for k in KEYS if k.preset_field}
