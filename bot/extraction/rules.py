"""Free incident text → what it names: device, interface, ``host:port`` instance, component,
fault type and severity, deterministically (the default without an LLM).

Names: vendor and Linux interface names are found first (``xe-1/0/3``, ``Ethernet1/49``,
``HundredGigE0/0/0/5``, ``Port-Channel10``, ``ae3``, ``swp31``, ``ens3f1`` …) and masked, so
a hostname pattern can never cut one (``xe-1``); ``host:port`` instances give their host as
the device; URLs, timestamps, IPv6 and MAC addresses are masked before any of it.

Component and fault type come from the playbooks' own ``applies_to`` vocabulary: a fault
type whose words all occur in the text, preferring those of the playbooks retrieval ranks
first, else the fault type of the best retrieved playbook when its similarity is high
enough; the component is the family of the playbook that fault type came from. Nothing
here is guessed: what is not found is None (unknown).

Every pattern runs on incident text of up to 40,000 characters in linear time: every
repetition is possessive (``*+``, ``++``) or bounded, and is followed by a character it
cannot match, so backtracking into it could never help.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bot.context.labels import message_pairs
from bot.extraction.severity import normalise_severity
from core.scenario import SEVERITIES, Scenario

# The scenario's component families (what context keys are made of), most specific first:
# a playbook's family is the first of these its ``applies_to.components`` reaches.
FAMILIES: Final = (
    "bgp",
    "dns",
    "certificate",
    "storage",
    "disk",
    "link",
    "capacity",
    "switch",
    "server",
    "service",
)
# applies_to components that belong to a family of another name.
_FAMILY_OF: Final = {
    "lag": "link",
    "optics": "link",
    "linecard": "switch",
    "router": "switch",
    "fabric": "switch",
    "nic": "server",
    "memory": "server",
    "cooling": "server",
    "power": "server",
    "ntp": "server",
    "hypervisor": "server",
    "raid": "storage",
    "dhcp": "service",
    "loadbalancer": "service",
}
_NOT_A_FAULT: Final = {"unknown", "any"}

_IF_LONG = (
    r"HundredGigE|FortyGigE|TwentyFiveGigE|TenGigE|TenGigabitEthernet|GigabitEthernet"
    r"|FastEthernet|Ethernet|Port-channel|Bundle-Ether|Hu|Fo|Te|Gi|Fa|Eth|Po"
)
_INTERFACE = re.compile(
    r"(?<![\w/.-])(?>"
    rf"(?:{_IF_LONG})\d{{1,4}}(?:/\d{{1,4}}){{0,4}}(?:[.:]\d{{1,5}})?"
    r"|(?:et|xe|ge|fe|mge|gr|lt)-\d{1,3}/\d{1,3}/\d{1,3}(?::\d{1,3})?(?:\.\d{1,5})?"
    r"|(?:ae|po|bond|eth|swp|eno|ens|mgmt|vlan|irb|em)\d{1,5}(?:[fsp]\d{1,3}){0,3}"
    r"(?:np\d{1,2})?(?:\.\d{1,5})?"
    r"|enp\d{1,3}s\d{1,3}(?:f\d{1,2})?"
    r")(?![\w/-])",
    re.IGNORECASE,
)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]{0,15}://[^\s<>\"']++", re.IGNORECASE)
_CLOCK = re.compile(r"(?<![\w.:])\d{1,2}:\d{2}(?::\d{2})?(?:\.\d++)?(?:Z|[+-]\d{2}:?\d{2})?\b")
_MAC = re.compile(r"\b[0-9a-f]{2}(?:[:-][0-9a-f]{2}){5}\b", re.IGNORECASE)
_IPV6 = re.compile(r"(?<![\w:])[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?![\w:])", re.IGNORECASE)
_INSTANCE = re.compile(
    r"(?<![\w.:/@-])((?:[a-z][a-z0-9-]*+(?:\.[a-z0-9-]++)*+)|(?:\d{1,3}(?:\.\d{1,3}){3})):"
    r"(\d{2,5})(?![\w:./])",
    re.IGNORECASE,
)
# A hostname: labels of letters/digits joined by ``-`` or ``.``, with a digit somewhere,
# starting with a letter; a bare ``word.word`` counts when its first label has a digit.
_HOST = re.compile(
    r"(?<![\w./:@=-])([a-z][a-z0-9]*+(?:[-.][a-z0-9]++)++)(?![\w/-]|\.\w)", re.IGNORECASE
)
_TICKET = re.compile(r"^[A-Z]{2,10}(?:-\d++)++$")
_NOT_HOSTS: Final = {"utf-8", "sha-256", "sha-1", "iso-8601", "x-forwarded-for", "tls-1.2"}
_DEVICE_LABELS: Final = ("sysname", "server", "host", "hostname", "node", "device", "instance")
_INTERFACE_LABELS: Final = ("interface", "ifdescr", "ifname", "port", "device")
_SEVERITY_WORDS: Final = {
    "crit": "critical",
    "pag": "high",
    "major": "high",
    "warn": "medium",
    "minor": "low",
}
_WORD = re.compile(r"[a-z0-9]++")
# Levels count next to "severity"/"sev" ("low rx power" says nothing about severity).
_SEVERITY_WORD = re.compile(
    r"\b(?:sev(?:erity)?+[\s:]*+(low|medium|high|critical)"
    r"|(low|medium|high)[\s-]*+sev(?:erity)?+"
    r"|(crit(?:ical)?+|page[ds]?+|paging|major|warn(?:ing)?+|minor))\b",
    re.IGNORECASE,
)
# A word this short must be equal to a fault-type word, not a prefix of it.
_MIN_PREFIX: Final = 4


class Vocabulary:
    """The playbooks' ``applies_to``: fault types and components, per playbook."""

    def __init__(self, applies: Mapping[str, tuple[Sequence[str], Sequence[str]]]) -> None:
        self.applies = {pb: (tuple(c), tuple(f)) for pb, (c, f) in applies.items()}
        self.fault_types = sorted(
            {f for _, faults in self.applies.values() for f in faults} - _NOT_A_FAULT
        )
        self.components = sorted({c for comps, _ in self.applies.values() for c in comps})

    @classmethod
    def from_folders(cls, folders: Iterable[Path]) -> Vocabulary:
        from retrieval.playbook import load_playbook

        applies = {}
        for folder in folders:
            for path in sorted(folder.rglob("*.md")):
                if path.name.lower() == "readme.md":
                    continue
                meta = load_playbook(path).meta
                applies[meta.id] = (meta.applies_to.components, meta.applies_to.fault_types)
        return cls(applies)

    def family(self, playbook_id: str) -> str | None:
        comps = self.applies.get(playbook_id, ((), ()))[0]
        reached = {_FAMILY_OF.get(c, c) for c in comps}
        return next((f for f in FAMILIES if f in reached), None)

    def faults_of(self, playbook_id: str) -> tuple[str, ...]:
        faults = self.applies.get(playbook_id, ((), ()))[1]
        return tuple(f for f in faults if f not in _NOT_A_FAULT)

    def playbooks_with(self, fault_type: str) -> list[str]:
        return sorted(pb for pb, (_, faults) in self.applies.items() if fault_type in faults)


@dataclass(frozen=True, slots=True)
class ExtractionConfig:
    """How retrieval evidence and named fault-type words are weighed (tuned on the dev
    split of ``eval/extraction`` only): a candidate playbook's evidence is its similarity
    plus ``named_weight`` per fault-type word the text names; below ``min_evidence``
    component and fault type stay unknown."""

    min_evidence: float = 0.2
    named_weight: float = 0.2
    hits_considered: int = 3


@dataclass(frozen=True, slots=True)
class Extracted:
    device: str = ""
    interface: str = ""
    instance: str = ""
    component: str | None = None
    fault_type: str | None = None
    severity: str | None = None
    how: Mapping[str, str] = field(default_factory=dict)  # field → how it was found


def _mask(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True, slots=True)
class _Words:
    """The distinct words of a text and their prefixes, for set lookups (a long text
    costs one pass, however many fault types the vocabulary holds)."""

    exact: frozenset[str]
    prefixes: frozenset[str]

    @classmethod
    def of(cls, words: Iterable[str]) -> _Words:
        exact = frozenset(w[:40] for w in words)
        prefixes = frozenset(w[:k] for w in exact for k in range(_MIN_PREFIX, len(w) + 1))
        return cls(exact, prefixes)

    def has(self, part: str) -> bool:
        """``part`` is a word of the text, or shares a stem of at least four letters with
        one (``flap`` ~ ``flapping``, ``errors`` ~ ``error``, ``util`` ~ ``utilisation``)."""
        if part in self.exact:
            return True
        if len(part) < _MIN_PREFIX:
            return False
        if part[: max(_MIN_PREFIX, len(part) - 3)] in self.prefixes:
            return True
        return any(part[:k] in self.exact for k in range(_MIN_PREFIX, len(part)))


def _named_faults(words: Sequence[str], vocabulary: Vocabulary) -> list[str]:
    """Fault types whose every word occurs in the text, most words first."""
    seen = _Words.of(words)
    named = [f for f in vocabulary.fault_types if all(seen.has(p) for p in f.split("_"))]
    return sorted(named, key=lambda f: (-len(f.split("_")), f))


def _interface_from_labels(labels: Mapping[str, str]) -> str:
    for key in _INTERFACE_LABELS:
        value = labels.get(key, "")
        if value and _INTERFACE.fullmatch(value):
            return value
    return ""


def _device_from_labels(labels: Mapping[str, str]) -> str:
    for key in _DEVICE_LABELS:
        value = labels.get(key, "")
        if not value or _INTERFACE.fullmatch(value):
            continue
        if "://" in value:
            host = _URL_HOST.search(value)
            if host and _HOST.fullmatch(host.group(1)):
                return host.group(1)
            continue
        host_part = value.split(":")[0]
        if _HOST.fullmatch(host_part) and not _is_ip(host_part):
            return host_part
    return ""


_URL_HOST = re.compile(r"://([a-z0-9.-]++)", re.IGNORECASE)
_IP = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def _is_ip(value: str) -> bool:
    return bool(_IP.match(value))


def _is_host(token: str) -> bool:
    if token.lower() in _NOT_HOSTS or _TICKET.match(token):
        return False
    if not any(c.isdigit() for c in token):
        return False
    first = re.split(r"[-.]", token, maxsplit=1)[0]
    if first.lower() in {"v", "ver", "tlsv", "sslv", "ipv", "http"}:
        return False
    # "shop.example4" is a DNS name; a bare host without "-" has a digit up front.
    return "-" in token or any(c.isdigit() for c in first)


_DEMOTING = re.compile(r"(?:\bfrom|\bto|\bbehind|\bvia|\bon)\s++$", re.IGNORECASE)


def _pick_device(text: str, candidates: list[re.Match[str]]) -> str:
    """The device the incident is about: the first named host that is not only where the
    report comes from or the far end (``from web-03``, ``to spine-1``, ``behind lb-1``)."""
    if not candidates:
        return ""
    for m in candidates:
        before = text[max(0, m.start() - 8) : m.start()]
        if not _DEMOTING.search(before) or before.rstrip().lower().endswith("on"):
            return m.group(1)
    return candidates[0].group(1)


def find_names(text: str, labels: Mapping[str, str] | None = None) -> tuple[str, str, str]:
    """(device, interface, instance) named in a text, each "" when absent."""
    pairs = {k.lower(): v for k, v in (labels or message_pairs(text)).items()}
    url_devices = [
        m.group(1)
        for u in _URL.finditer(text)
        for m in re.finditer(r"[?&](?:var-)?device=([\w.-]{1,100})", u.group(0))
    ]
    masked = _mask(_mask(_mask(_mask(text, _URL), _MAC), _IPV6), _CLOCK)
    instance_m = next(
        (m for m in _INSTANCE.finditer(masked) if not _INTERFACE.fullmatch(m.group(1))), None
    )
    instance = instance_m.group(0) if instance_m else ""
    interface = _interface_from_labels(pairs)
    interfaces = list(_INTERFACE.finditer(masked))
    if not interface and interfaces:
        interface = _member(masked, interfaces)
    no_names = _mask(masked, _INTERFACE)
    if instance_m:
        no_names = (
            no_names[: instance_m.start()] + " " * len(instance) + no_names[instance_m.end() :]
        )
    # key=value pairs: their values are names only through the labels below.
    no_pairs = re.sub(r"\b[a-z_]++\s*+=\s*+\S++", lambda m: " " * len(m.group(0)), no_names)
    device = _device_from_labels(pairs)
    if not device and instance_m and not _is_ip(instance_m.group(1)):
        device = instance_m.group(1)
    if not device:
        hosts = [m for m in _HOST.finditer(no_pairs) if _is_host(m.group(1))]
        device = _pick_device(no_pairs, hosts)
    if not device and url_devices:
        device = url_devices[0]
    return device, interface, instance


_MEMBER = re.compile(r"\b(?:member|slave|members)\b", re.IGNORECASE)


def _member(text: str, found: list[re.Match[str]]) -> str:
    """For a bundle with a faulty member the member is the interface (``po12 member
    et-0/0/4``, ``bond0 degraded: slave ens3f1 down``)."""
    bundles = re.compile(r"^(?:ae|po|bond|port-channel|bundle-ether)\d", re.IGNORECASE)
    if len(found) > 1 and bundles.match(found[0].group(0)):
        between = text[found[0].end() : found[1].start()]
        if _MEMBER.search(between):
            return found[1].group(0)
    return found[0].group(0)


def classify(
    text: str,
    vocabulary: Vocabulary,
    hits: Sequence[tuple[str, float]] = (),
    config: ExtractionConfig = ExtractionConfig(),
) -> tuple[str | None, str | None, str]:
    """(component, fault type, how) from the vocabulary and retrieval evidence.

    Each playbook retrieval ranks in the first ``hits_considered`` and each playbook whose
    fault type the text names is a candidate; its evidence is its similarity plus
    ``named_weight`` per word of the fault type the text names. The best candidate gives
    the fault type (the one named, else its first) and the component (its family), when
    its evidence reaches ``min_evidence``."""
    words = _words(_CAMEL.sub(" ", _mask(_mask(text, _URL), _INTERFACE)))
    named = _named_faults(words, vocabulary)
    similarity = dict(hits[: config.hits_considered])
    candidates = set(similarity) | {pb for f in named for pb in vocabulary.playbooks_with(f)}
    best: tuple[float, str, str] | None = None
    for pb in sorted(candidates):
        faults = vocabulary.faults_of(pb)
        if not faults:
            continue
        said = [f for f in named if f in faults]
        fault = said[0] if said else faults[0]
        evidence = similarity.get(pb, 0.0) + config.named_weight * (
            len(said[0].split("_")) if said else 0
        )
        if best is None or evidence > best[0]:
            best = (evidence, pb, fault)
    if best is None or best[0] < config.min_evidence:
        return None, None, "no evidence"
    evidence, pb, fault = best
    return vocabulary.family(pb), fault, f"{fault} from {pb} (evidence {evidence:.2f})"


_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def severity_of(text: str, labels: Mapping[str, str]) -> str | None:
    """A ``severity`` label, else a severity word the text uses as a word (``critical``,
    ``crit``, ``paged``, ``warning`` …), else None: unknown."""
    if "severity" in labels:
        return normalise_severity(str(labels["severity"]))
    match = _SEVERITY_WORD.search(text)
    if match is None:
        return None
    word = next(g for g in match.groups() if g).lower()
    if word in SEVERITIES:
        return word
    return next(v for k, v in _SEVERITY_WORDS.items() if word.startswith(k))


def extract(
    text: str,
    vocabulary: Vocabulary | None,
    hits: Sequence[tuple[str, float]] = (),
    labels: Mapping[str, str] | None = None,
    config: ExtractionConfig = ExtractionConfig(),
) -> Extracted:
    pairs = {k.lower(): str(v) for k, v in {**message_pairs(text), **(labels or {})}.items()}
    device, interface, instance = find_names(text, pairs)
    component, fault, how = (None, None, "no vocabulary")
    if vocabulary is not None:
        component, fault, how = classify(text, vocabulary, hits, config)
    stated_component = pairs.get("component")
    stated_fault = pairs.get("fault_type")
    return Extracted(
        device=device,
        interface=interface,
        instance=instance,
        component=stated_component or component,
        fault_type=stated_fault or fault,
        severity=severity_of(text, pairs),
        how={"fault_type": "label" if stated_fault else how},
    )


def extract_scenario(
    text: str,
    now: dt.datetime,
    hints: Mapping[str, object] | None = None,
    vocabulary: Vocabulary | None = None,
    hits: Sequence[tuple[str, float]] = (),
) -> Scenario:
    """The scenario of an incident with only what its own text and labels say; context
    the text does not state stays unknown (``bot/context`` adds facts with sources)."""
    from bot.context.labels import parse_fact

    found = extract(text, vocabulary, hits)
    fields: dict[str, object] = {
        "component": found.component,
        "fault_type": found.fault_type,
        "severity": found.severity,
        "redundancy": None,
        "utilisation": None,
        "maintenance_window": None,
        "hour_of_day": now.hour,
        "text": text.strip(),
        "device": found.device,
    }
    for key, raw in message_pairs(text).items():
        fact = parse_fact(key, raw)
        if fact is not None:
            fields[fact[0]] = fact[1]
    fields.update(hints or {})
    return Scenario(**fields)  # type: ignore[arg-type]
