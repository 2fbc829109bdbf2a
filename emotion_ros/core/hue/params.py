"""The Hue actuator's parameters (ParamSpec, ROS-free): declared by the node, used as-is by the controller tests."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from emotion_ros.core.hue.policy import HUE_MAX_GROUP_COMMANDS_PER_S, HUE_MAX_LIGHT_COMMANDS_PER_S
from emotion_ros.core.param_spec import ParamSpec


def _check_host(value: str) -> Optional[str]:
    if not value or value == 'auto':
        return None
    host, _, port = value.rpartition(':') if value.count(':') == 1 else (value, '', '')
    if any(c in value for c in '/ @?#') or not host or not value.isprintable():
        return f'{value!r} is not host, host:port or auto'
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return f'{value!r}: port must be 1-65535'
    return None


def _check_interfaces(value: str) -> Optional[str]:
    import ipaddress
    for part in filter(None, (p.strip() for p in value.split(','))):
        try:
            ipaddress.IPv4Address(part)
        except ValueError:
            return f'{part!r} is not an IPv4 address'
    return None


def _check_ca_file(value: str) -> Optional[str]:
    if value and not Path(value).expanduser().is_file():
        return f'{value!r} is not a file'
    return None


SPECS = (
    ParamSpec('bridge', '', 'Hue bridge as host or host:port, or "auto" (mDNS _hue._tcp, last address cached); '
              'the node uses API v2 over HTTPS where the bridge speaks it, else v1; may be empty with dry_run',
              check=_check_host, read_only=True),
    ParamSpec('api', 'auto', 'auto: v2 (HTTPS) where the bridge speaks it, else v1; v1 or v2 to force one',
              choices=('auto', 'v1', 'v2'), read_only=True),
    ParamSpec('ca_file', '', 'PEM CA that signed the bridge certificate (e.g. the Hue root CA); empty = pin the '
              'certificate on first use (stored with the key). The CN must be the bridge id either way',
              check=_check_ca_file, read_only=True),
    ParamSpec('dry_run', False, 'no bridge: log and publish the states that would be sent (same rules and limits)',
              read_only=True),
    ParamSpec('lights', '1', 'comma-separated light ids (v1 number or v2 id) or names (case-insensitive) to drive '
              '(used when group is empty)', read_only=True, also_accepts=(int,)),
    ParamSpec('group', '', 'group (room/zone) id or name to drive instead of lights ("0" = all lights); group '
              'commands are limited to 1/s by the bridge', read_only=True, also_accepts=(int,)),
    ParamSpec('colors_file', '', 'label -> light state table (YAML); empty = config/hue_colors.yaml of the package',
              read_only=True),
    ParamSpec('username_file', '', 'JSON key file (mode 0600, outside any git tree) holding per bridge the key, '
              'client key, bridge id and certificate pin; empty = $XDG_CONFIG_HOME/emotion_ros/hue_username.json '
              'or ~/.config/emotion_ros/hue_username.json', read_only=True),
    ParamSpec('discovery_timeout_s', 5.0, 'bridge:=auto: how long one mDNS search waits', min=0.5, max=60.0,
              read_only=True),
    ParamSpec('discovery_interfaces', '', 'bridge:=auto: comma-separated IPv4 addresses of the interfaces to '
              'search on; empty = all', check=_check_interfaces, read_only=True),
    ParamSpec('follow_track_id', '', 'follow the face with this track id; empty = the largest face'),
    ParamSpec('hold_s', 1.0, 'a new expression must hold this long (every frame >= min_confidence) before the '
              'light changes', min=0.0, max=60.0),
    ParamSpec('min_confidence', 0.5, 'frames below this confidence (or with a non-finite one) do not count '
              'towards a new expression', min=0.0, max=1.0),
    ParamSpec('no_face_label', '', 'show this label\'s state after no_face_after_s without the followed face; '
              'empty = keep the last state'),
    ParamSpec('no_face_after_s', 10.0, 'see no_face_label', min=0.0, max=86400.0),
    ParamSpec('max_light_commands_per_s', HUE_MAX_LIGHT_COMMANDS_PER_S, 'all commands to the bridge, in any 1 s '
              'window (the bridge handles about 10/s)', min=0.1, max=HUE_MAX_LIGHT_COMMANDS_PER_S),
    ParamSpec('max_group_commands_per_s', HUE_MAX_GROUP_COMMANDS_PER_S, 'group commands, in any max(1 s, 1/rate) '
              'window (the bridge handles about 1/s)', min=0.05, max=HUE_MAX_GROUP_COMMANDS_PER_S),
    ParamSpec('request_timeout_s', 1.0, 'the whole of one bridge request, from connect to the last byte of the '
              'reply (the executor waits this long at most)', min=0.05, max=10.0, read_only=True),
    ParamSpec('backoff_initial_s', 0.5, 'first wait after a bridge fault; doubles per failure', min=0.05, max=60.0),
    ParamSpec('backoff_max_s', 30.0, 'longest wait between attempts after faults', min=0.1, max=600.0),
    ParamSpec('pairing_timeout_s', 120.0, 'give up pairing (exit code 3) when the link button was not pressed within '
              'this time; 0 = wait forever', min=0.0, max=86400.0),
    ParamSpec('pairing_retry_s', 2.0, 'interval between pairing attempts', min=0.2, max=60.0),
)


def defaults() -> dict:
    return {s.name: s.default for s in SPECS}
