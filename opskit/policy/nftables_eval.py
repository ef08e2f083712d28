"""What an nftables ruleset really does to a new inbound or forwarded packet.

Pure: takes the ``nft -j list ruleset`` JSON (already parsed) and answers, for
one hook (input or forward), one address family (IPv4/IPv6) and one transport
(tcp/udp): *can a new connection from an arbitrary outside address to a port
not approved for the host's role get through?* (R-NET-5)

It follows the kernel's semantics, not a chain's policy alone:

* every base chain on the hook (tables of family ``ip``/``ip6`` and ``inet``,
  ordered by priority) must accept the packet; drop/reject in any is final;
* rules run in order; ``accept`` ends the base chain, ``drop``/``reject`` end
  the packet, ``jump`` calls a chain (``return`` or its end comes back),
  ``goto`` replaces the rest of the chain, the chain policy applies at the end;
* a table with ``flags dormant`` is not evaluated at all.

The packet is symbolic: its destination port, source and destination address
and in/out interface are "anything an outsider may choose". Each field is a
finite set of representatives, one per interval that the ruleset's own
constants cut its value range into, so a rule's match splits the set exactly
(``ip saddr 0.0.0.0/0`` matches all of them; ``tcp dport {22, 443}`` only
two). Matches or statements it does not understand are taken both ways
("may match") and named in the answer's ``unknown``: they can only turn a
pass into a fail, never the reverse.
"""
from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass, field

HOOKS = ("input", "forward")
FAMILIES_OF = {4: ("ip", "inet"), 6: ("ip6", "inet")}
PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50,
                  "srcnat": 100}
# statements that neither match nor decide (for the question asked)
NO_OPS = {"counter", "log", "mangle", "notrack", "snat", "dnat", "masquerade", "redirect",
          "set", "ct helper", "ct timeout", "ct expectation", "dup", "flow", "secmark",
          "meter", "limit", "quota", "last"}
MAY_NOT_MATCH = {"limit", "quota", "meter"}      # an outsider stays under the limit
MAX_STEPS = 200_000
MAX_DEPTH = 16                                     # the kernel's jump stack
FRESH_IFACE = "ext-opskit0"                        # an interface no rule names


class TooComplex(Exception):
    """More paths than MAX_STEPS: the caller treats the hook as 'may accept'."""


@dataclass
class Answer:
    """Can a new packet get through one hook? ``via`` names, per base chain,
    the rule (or policy) that lets the witness packet through; ``denied_by``
    what stops it otherwise; ``unknown`` what was assumed to match."""

    open: bool
    witness: str = ""
    via: list[str] = field(default_factory=list)
    denied_by: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Path:
    box: tuple                # ((field, frozenset of representatives), ...)
    notes: tuple = ()         # not-understood things assumed on this path
    via: tuple = ()           # deciding rules so far (one per base chain)

    def get(self, name):
        for key, values in self.box:
            if key == name:
                return values
        raise KeyError(name)

    def with_field(self, name, values) -> Path:
        return Path(tuple((k, values if k == name else v) for k, v in self.box),
                    self.notes, self.via)

    def noted(self, note: str) -> Path:
        return self if note in self.notes else Path(self.box, self.notes + (note,), self.via)


@dataclass
class Outcome:
    kind: str                 # accept | drop | return | next
    path: Path
    where: str = ""


# --- the ruleset -----------------------------------------------------------------------

@dataclass
class Ruleset:
    """Tables, chains, rules and named sets of one ``nft -j list ruleset``."""

    tables: dict = field(default_factory=dict)     # (family, table) -> table object
    chains: dict = field(default_factory=dict)     # (family, table, chain) -> chain object
    rules: dict = field(default_factory=dict)      # (family, table, chain) -> [rule]
    sets: dict = field(default_factory=dict)       # (family, table, name) -> set object

    @classmethod
    def from_json(cls, data) -> Ruleset:
        """Parse the JSON (text or already-loaded object); ValueError when it is not."""
        if isinstance(data, str):
            data = json.loads(data or "{}")
        if not isinstance(data, dict) or not isinstance(data.get("nftables", []), list):
            raise ValueError("not an nft -j ruleset (no 'nftables' list)")
        out = cls()
        for item in data.get("nftables", []):
            if not isinstance(item, dict) or not item:
                continue
            kind, obj = next(iter(item.items()))
            if not isinstance(obj, dict):
                continue
            if kind == "table":
                out.tables[(obj.get("family"), obj.get("name"))] = obj
            elif kind == "chain":
                out.chains[(obj.get("family"), obj.get("table"), obj.get("name"))] = obj
            elif kind == "rule":
                out.rules.setdefault((obj.get("family"), obj.get("table"), obj.get("chain")),
                                     []).append(obj)
            elif kind in ("set", "map"):
                out.sets[(obj.get("family"), obj.get("table"), obj.get("name"))] = obj
        return out

    def merge(self, other: Ruleset) -> None:
        """Add another listing (one table listed on its own) to this one."""
        for name in ("tables", "chains", "rules", "sets"):
            getattr(self, name).update(getattr(other, name))


def table_flags_dormant(table: dict) -> bool | None:
    """True/False from a table object's flags; None when they cannot be read
    (nft 1.0.6 prints garbage or truncates the output for table flags)."""
    flags = table.get("flags")
    if flags is None:
        return False
    if isinstance(flags, str):
        flags = [flags]
    if not isinstance(flags, list):
        return None
    if "dormant" in flags:
        return True
    return False if all(f in ("owner", "persist") for f in flags) else None


def tables_from_text(text: str) -> list[tuple[str, str]]:
    """(family, table) of every table in ``nft list ruleset`` text."""
    return [(w[1], w[2]) for w in (raw.split() for raw in text.splitlines()
                                   if raw.startswith("table "))
            if len(w) >= 3]


def dormant_from_text(text: str) -> set[tuple[str, str]]:
    """(family, table) of tables with ``flags dormant`` in ``nft list ruleset`` text."""
    out, current = set(), None
    for raw in text.splitlines():
        words = raw.split()
        if len(words) >= 3 and words[0] == "table" and not raw.startswith((" ", "\t")):
            current = (words[1], words[2])
        elif current and words[:1] == ["flags"] and "dormant" in raw.replace(",", " ").split():
            out.add(current)
    return out


# --- value domains ------------------------------------------------------------------------

PORT_MAX = 65535


def _port(value) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    return socket.getservbyname(text)             # 'ssh' -> 22; OSError when unknown


def _addr(value, version: int) -> tuple[int, int]:
    """An address, prefix or range as an inclusive integer interval."""
    if isinstance(value, dict) and "prefix" in value:
        net = ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}",
                                   strict=False)
        if net.version != version:
            raise ValueError("other family")
        return int(net.network_address), int(net.broadcast_address)
    ip = ipaddress.ip_address(str(value))
    if ip.version != version:
        raise ValueError("other family")
    return int(ip), int(ip)


def _unwrap(element):
    if isinstance(element, dict) and "elem" in element:
        return element["elem"].get("val")
    return element


def intervals(values, kind: str, version: int) -> list[tuple[int, int]]:
    """Set elements / a single right-hand value as inclusive intervals."""
    out = []
    for element in values:
        element = _unwrap(element)
        if isinstance(element, dict) and "range" in element:
            lo, hi = element["range"]
            if kind == "port":
                out.append((_port(lo), _port(hi)))
            else:
                out.append((_addr(lo, version)[0], _addr(hi, version)[1]))
        elif kind == "port":
            out.append((_port(element), _port(element)))
        else:
            out.append(_addr(element, version))
    return out


def representatives(cuts: set[int], top: int, excluded: list[tuple[int, int]]) -> frozenset:
    """One value per elementary interval between ``cuts`` that is not excluded."""
    points = sorted({0, *[c for c in cuts if 0 <= c <= top]})
    return frozenset(p for p in points
                     if not any(lo <= p <= hi for lo, hi in excluded))


# sources an outsider cannot use; 240.0.0.0/4 is not among them: Linux routes it
# like any unicast source (a real connection from 240.0.0.5 got in)
NON_SOURCE = {4: ["0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32"],
              6: ["::/128", "::1/128", "ff00::/8"]}


@dataclass
class PacketState:
    """What the ruleset itself can change about a new packet before a rule
    looks at it: sets that rules fill at packet time (``add @s { ip saddr }``,
    meters, ``flags dynamic``) hold more than their listed elements; a
    ``notrack`` leaves the packet ``untracked`` instead of ``new``; a
    ``dnat``/``redirect`` sets ``ct status dnat``."""

    dynamic_sets: set = field(default_factory=set)     # (family, table, name)
    notrack: bool = False
    nat: bool = False

    @classmethod
    def of(cls, rs: "Ruleset") -> "PacketState":
        out = cls()
        for (family, table, _chain), rules in rs.rules.items():
            for rule in rules:
                for expr in rule.get("expr", []):
                    if isinstance(expr, dict) and expr:
                        out._note(family, table, *next(iter(expr.items())))
        for key, obj in rs.sets.items():
            if "dynamic" in (obj.get("flags") or ()):
                out.dynamic_sets.add(key)
        return out

    def _note(self, family, table, kind, body) -> None:
        if kind in ("set", "map") and isinstance(body, dict):
            name = body.get("set") if kind == "set" else body.get("map")
            if isinstance(name, str):
                self.dynamic_sets.add((family, table, name.lstrip("@")))
        elif kind == "meter" and isinstance(body, dict) and isinstance(body.get("name"), str):
            self.dynamic_sets.add((family, table, body["name"]))
        elif kind in ("dnat", "redirect"):
            self.nat = True
        elif kind == "notrack":
            self.notrack = True


# --- the evaluator --------------------------------------------------------------------------

class Evaluator:
    """Evaluates one hook for one (ip version, transport) over a Ruleset."""

    def __init__(self, ruleset: Ruleset, hook: str, version: int, proto: str,
                 approved: list[tuple[int, int]], dormant: set | None = None, *,
                 only_ports: list[tuple[int, int]] | None = None,
                 allowed_sources: list[tuple[int, int]] | None = None):
        self.rs, self.hook, self.version, self.proto = ruleset, hook, version, proto
        self.approved = approved
        # the management question: only these ports, from outside these sources
        self.only_ports = only_ports
        self.allowed_sources = list(allowed_sources or [])
        self.dormant = set(dormant or ())
        self.steps = 0
        self.hits: dict = {}             # id(match) -> (match, representatives it selects)
        self.wheres: dict = {}           # id(rule) -> (rule, rendering)
        self.effects: dict = {}          # id(rule) -> (rule, can it decide anything)
        self.vmaps: dict = {}            # id(vmap) -> (vmap, [(match, verdict)])
        self.universe: dict = {}         # field -> every representative
        self.state = PacketState.of(ruleset)

    # -- entry point
    def run(self, source: str = "nft -j list ruleset") -> Answer:
        """Whether some new packet passes every base chain on the hook."""
        self.source = source
        chains = self.base_chains()
        start = self.initial_path()
        if start is None:
            return Answer(False, denied_by=[f"every {self.proto} port (and source) is approved"])
        if not chains:
            why = f"{source}: no base chain on the {self.hook} hook (everything accepted)"
            return Answer(True, self.describe(start), [why])
        paths, denied = [start], []
        try:
            for key, chain in chains:
                paths = self.through_base_chain(key, chain, paths, denied)
                if not paths:
                    break
        except TooComplex:
            note = f"ruleset too complex to follow (over {MAX_STEPS} paths)"
            return Answer(True, self.describe(start), [note], denied, [note])
        if not paths:
            return Answer(False, denied_by=_unique(denied))
        witness = paths[0]
        unknown = _unique([n for p in paths for n in p.notes])
        return Answer(True, self.describe(witness), list(witness.via), _unique(denied), unknown)

    def base_chains(self):
        """Base chains on the hook of the families that see this packet, by priority."""
        families = FAMILIES_OF[self.version]
        found = []
        for key, chain in self.rs.chains.items():
            family, table, _ = key
            if chain.get("hook") != self.hook or family not in families:
                continue
            if (family, table) in self.dormant:
                continue
            found.append((self.priority(chain), families.index(family), key, chain))
        return [(key, chain) for _, _, key, chain in sorted(found, key=lambda f: f[:3])]

    @staticmethod
    def priority(chain) -> int:
        prio = chain.get("prio", 0)
        if isinstance(prio, int):
            return prio
        word, _, rest = str(prio).partition(" ")
        base = PRIORITY_NAMES.get(word, 0)
        try:
            return base + int(rest.replace(" ", "")) if rest else base
        except ValueError:
            return base

    def through_base_chain(self, key, chain, paths, denied) -> list[Path]:
        """Paths that leave the base chain accepted (rule accept or policy accept)."""
        policy = chain.get("policy", "accept")
        name = self.chain_name(key)
        out = []
        for path in paths:
            for o in self.run_chain(key, path, 0):
                if o.kind == "accept":
                    out.append(_with_via(o.path, o.where))
                elif o.kind == "return" and policy == "accept":
                    out.append(_with_via(o.path, f"{self.source}: chain {name} (hook "
                                                 f"{self.hook}) policy accept"))
                elif o.kind == "return":
                    denied.append(f"{self.source}: chain {name} (hook {self.hook}) policy "
                                  f"{policy}")
                else:
                    denied.append(o.where)
        return out

    def chain_name(self, key) -> str:
        return f"{key[0]} {key[1]} {key[2]}"

    # -- the packet
    def initial_path(self) -> Path | None:
        cuts = {"port": {1, PORT_MAX + 1}, "addr": set(), "iface": set()}
        self.collect_cuts(cuts)
        port_excluded = [(0, 0)]
        if self.hook == "input":
            port_excluded += list(self.approved)
            for lo, hi in self.approved:
                cuts["port"] |= {lo, hi + 1}
        if self.only_ports is not None:
            port_excluded = _complement(self.only_ports, PORT_MAX)
            for lo, hi in self.only_ports:
                cuts["port"] |= {lo, hi + 1}
        ports = representatives(cuts["port"], PORT_MAX, port_excluded)
        if not ports:
            return None
        top = (1 << (32 if self.version == 4 else 128)) - 1
        non_source = [_addr({"prefix": dict(zip(("addr", "len"), n.split("/")))}, self.version)
                      for n in NON_SOURCE[self.version]]
        non_source = non_source + self.allowed_sources
        for lo, hi in non_source:
            cuts["addr"] |= {lo, hi + 1}
        saddrs = representatives(cuts["addr"], top, non_source)
        if not saddrs:
            return None                  # every possible source is allowed
        daddrs = representatives(cuts["addr"], top, [])
        names = {n.rstrip("*") for n in cuts["iface"]} | {FRESH_IFACE}
        # a wildcard also stands for a longer name: "lo*" matches lowpan0, not only lo
        names |= {n[:-1] + "opskit0" for n in cuts["iface"] if n.endswith("*")}
        names = frozenset(n for n in names if n and n != "lo")
        box = [("dport", ports), ("saddr", saddrs), ("daddr", daddrs), ("iif", names)]
        if self.hook == "forward":
            box.append(("oif", names))
        self.universe = dict(box)
        self.universe.setdefault("oif", names)
        return Path(tuple(box))

    def collect_cuts(self, cuts) -> None:
        """Every constant a match compares a free field with (incl. named sets)."""
        for rules in self.rs.rules.values():
            for rule in rules:
                for expr in rule.get("expr", []):
                    if not isinstance(expr, dict) or not expr:
                        continue
                    kind, body = next(iter(expr.items()))
                    if kind == "match" and isinstance(body, dict):
                        self.cuts_of(body.get("left"), body.get("right"), body.get("op"),
                                     rule, cuts)
                    elif kind == "vmap" and isinstance(body, dict):
                        keys = self.map_elements(body.get("data"), rule)
                        if keys is not None:
                            self.cuts_of(body.get("key"), {"set": [k for k, _ in keys]},
                                         "==", rule, cuts)

    def cuts_of(self, left, right, op, rule, cuts) -> None:
        name = self.free_field(left)
        if name is None:
            return
        values = self.right_values(right, rule)
        if values is None:
            return
        if name in ("iif", "oif"):
            cuts["iface"] |= {str(v) for v in values if isinstance(v, str)}
            return
        kind = "port" if name == "dport" else "addr"
        try:
            found = intervals(values, kind, self.version)
        except (ValueError, OSError, TypeError, KeyError):
            return
        if op in ("<", ">", "<=", ">=") and found:
            value = found[0][0]
            found = [(value, value), (value + 1, value + 1)]
        for lo, hi in found:
            cuts[kind] |= {lo, hi + 1}

    def describe(self, path: Path) -> str:
        """The witness packet in words."""
        port = min(path.get("dport"))
        low = min(path.get("saddr") or {0})
        addr = ipaddress.IPv4Address(low) if self.version == 4 else ipaddress.IPv6Address(low)
        iface = min(path.get("iif")) if path.get("iif") else "?"
        return f"new {self.proto} packet from {addr} on {iface} to port {port}"

    # -- rules
    def run_chain(self, key, path: Path, depth: int) -> list[Outcome]:
        """Outcomes of one chain: accept/drop (final) or return (fell off / return)."""
        if depth > MAX_DEPTH:
            note = f"jump deeper than {MAX_DEPTH} chains at {self.chain_name(key)}"
            return [Outcome("accept", path.noted(note), note)]
        pending, outcomes = [path], []
        for rule in self.rs.rules.get(key, []):
            if not pending:
                break
            following = []
            for p in pending:
                for o in self.run_rule(key, rule, p, depth):
                    (following if o.kind == "next" else outcomes).append(
                        o.path if o.kind == "next" else o)
            pending = _merge(following)
        outcomes += [Outcome("return", p, f"end of chain {self.chain_name(key)}")
                     for p in pending]
        return outcomes

    def run_rule(self, key, rule, path: Path, depth: int) -> list[Outcome]:
        """Outcomes of one rule: its verdict for the matching part, 'next' for the rest."""
        exprs = rule.get("expr", [])
        if not self.decides(rule):
            return [Outcome("next", path)]          # no verdict: cannot change the outcome
        where = self.where(key, rule)
        alive, out = [path], []
        for expr in exprs:
            self.tick(len(alive))
            kind, body = (next(iter(expr.items())) if isinstance(expr, dict) and expr
                          else (repr(expr), None))
            if kind == "match":
                matched = []
                for p in alive:
                    yes, no = self.split(body, rule, p)
                    matched += yes
                    out += [Outcome("next", q) for q in no]
                alive = matched
            elif kind in MAY_NOT_MATCH:
                out += [Outcome("next", p) for p in alive]
            elif kind in NO_OPS:
                continue
            elif kind == "vmap":
                for p in alive:
                    out += self.vmap(key, rule, body, p, depth, where)
                alive = []
            elif kind in ("accept", "drop", "reject", "return", "continue", "jump", "goto"):
                for p in alive:
                    out += self.verdict(key, kind, body, p, depth, where)
                alive = []
            else:
                # unknown statement: it may accept (queue, xt target, ...) or do nothing
                note = f"{where} ({kind} not understood)"
                out += [Outcome("accept", p.noted(note), where) for p in alive]
            if not alive:
                break
        out += [Outcome("next", p) for p in alive]
        return out

    def verdict(self, key, kind, body, path, depth, where) -> list[Outcome]:
        if kind == "accept":
            return [Outcome("accept", path, where)]
        if kind in ("drop", "reject"):
            return [Outcome("drop", path, where)]
        if kind == "return":
            return [Outcome("return", path, where)]
        if kind == "continue":
            return [Outcome("next", path)]
        target = (body or {}).get("target") if isinstance(body, dict) else None
        tkey = (key[0], key[1], target)
        if tkey not in self.rs.chains and tkey not in self.rs.rules:
            note = f"{where} ({kind} to unknown chain {target})"
            return [Outcome("accept", path.noted(note), where)]
        out = []
        for o in self.run_chain(tkey, path, depth + 1):
            if o.kind == "return" and kind == "jump":
                out.append(Outcome("next", o.path))
            else:
                out.append(o)
        return out

    def vmap(self, key, rule, body, path, depth, where) -> list[Outcome]:
        elements = self.map_elements((body or {}).get("data"), rule)
        if elements is None:
            note = f"{where} (verdict map not understood)"
            return [Outcome("accept", path.noted(note), where), Outcome("next", path)]
        if id(body) not in self.vmaps:
            self.vmaps[id(body)] = (body, [
                ({"op": "==", "left": body.get("key"), "right": {"set": [k]}}, v)
                for k, v in elements])
        out, rest = [], [path]
        for match, verdict_obj in self.vmaps[id(body)][1]:
            remaining = []
            for p in rest:
                yes, no = self.split(match, rule, p)
                remaining += no
                for q in yes:
                    if isinstance(verdict_obj, dict) and verdict_obj:
                        vkind, vbody = next(iter(verdict_obj.items()))
                        out += self.verdict(key, vkind, vbody, q, depth, where)
                    else:
                        out.append(Outcome("accept", q.noted(f"{where} (map value)"), where))
            rest = remaining
        return out + [Outcome("next", p) for p in rest]

    def map_elements(self, data, rule):
        if isinstance(data, dict) and isinstance(data.get("set"), list):
            elems = data["set"]
        elif isinstance(data, str) and data.startswith("@"):
            key = (rule.get("family"), rule.get("table"), data[1:])
            obj = self.rs.sets.get(key)
            if obj is None or key in self.state.dynamic_sets:
                return None
            elems = obj.get("elem", [])
        else:
            return None
        out = []
        for e in elems:
            if isinstance(e, list) and len(e) == 2:
                out.append((_unwrap(e[0]), e[1]))
            else:
                return None
        return out

    def decides(self, rule) -> bool:
        """Whether the rule holds anything but matches and no-op statements."""
        cached = self.effects.get(id(rule))
        if cached is None:
            cached = (rule, any(isinstance(e, dict) and e and next(iter(e)) not in
                                ("match", *NO_OPS) for e in rule.get("expr", [])))
            self.effects[id(rule)] = cached
        return cached[1]

    def where(self, key, rule) -> str:
        """'source: family table chain handle N: the rule' (rendered once per rule)."""
        cached = self.wheres.get(id(rule))
        if cached is None:
            if "text" in rule:       # translated from iptables-save: its own line
                text = f"{self.source}:{rule.get('line', '?')}: {rule['text']}"
            else:
                text = (f"{self.source}: {self.chain_name(key)} handle "
                        f"{rule.get('handle', '?')}: {render_rule(rule)}")
            cached = (rule, text)
            self.wheres[id(rule)] = cached
        return cached[1]

    def tick(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise TooComplex()

    # -- matches
    def free_field(self, left) -> str | None:
        """The free packet field ``left`` reads, if it is one."""
        if not isinstance(left, dict):
            return None
        if "meta" in left:
            k = left["meta"].get("key")
            if k in ("oifname", "oif") and self.hook == "input":
                return None                    # no output interface yet: fixed_value's
            return {"iifname": "iif", "iif": "iif", "oifname": "oif", "oif": "oif"}.get(k)
        if "payload" in left:
            pl = left["payload"]
            proto, fld = pl.get("protocol"), pl.get("field")
            ipname = "ip" if self.version == 4 else "ip6"
            if proto == ipname and fld in ("saddr", "daddr"):
                return fld
            if proto in (self.proto, "th") and fld == "dport":
                return "dport"
        return None

    def fixed_value(self, left):
        """(known, value) for facts fixed by the question; known=None: not understood;
        value None means 'this header is absent' (the match cannot hold)."""
        if not isinstance(left, dict):
            return None, None
        v4 = self.version == 4
        if "meta" in left:
            k = left["meta"].get("key")
            if k == "l4proto":
                return True, self.proto
            if k == "nfproto":
                return True, "ipv4" if v4 else "ipv6"
            if k == "protocol":
                return True, "ip" if v4 else "ip6"
            if k in ("oifname", "oif") and self.hook == "input":
                return True, ""
            return None, None
        if "ct" in left:
            k = left["ct"].get("key")
            if k == "state":
                return True, frozenset({"new", "untracked"}) if self.state.notrack else "new"
            if k == "direction":
                return True, "original"
            if k == "status":
                return True, frozenset({(), ("dnat",)}) if self.state.nat else ()
            return None, None
        if "payload" in left:
            pl = left["payload"]
            proto, fld = pl.get("protocol"), pl.get("field")
            if proto is None:
                return None, None                 # raw payload: not understood
            if proto in ("ip", "ip6"):
                if proto != ("ip" if v4 else "ip6"):
                    return True, None             # no such header on this packet
                if fld == "protocol":
                    return True, self.proto
                if fld == "nexthdr":            # the first header after IPv6's: an
                    return True, frozenset({self.proto, "extension-header"})  # option may come first
                return None, None
            if proto in ("tcp", "udp", "udplite", "sctp", "dccp", "icmp", "icmpv6", "esp",
                         "ah", "comp", "igmp"):
                if proto != self.proto:
                    return True, None
                return None, None                 # sport, flags, ...: not understood
            if proto == "th":
                return None, None
        return None, None

    def right_values(self, right, rule):
        """A right-hand side as a list of values/elements, or None when not understood."""
        if isinstance(right, dict) and "set" in right:
            return right["set"] if isinstance(right["set"], list) else [right["set"]]
        if isinstance(right, str) and right.startswith("@"):
            key = (rule.get("family"), rule.get("table"), right[1:])
            obj = self.rs.sets.get(key)
            if obj is None or not isinstance(obj.get("type"), str) or key in self.state.dynamic_sets:
                return None                       # missing, a concatenated type, or filled by packets
            return obj.get("elem", []) or []
        if isinstance(right, list):
            return right
        if isinstance(right, dict) and not ("prefix" in right or "range" in right):
            return None
        return [right]

    def split(self, match, rule, path: Path) -> tuple[list[Path], list[Path]]:
        """(paths where ``match`` holds, paths where it does not)."""
        op = match.get("op", "==")
        left, right = match.get("left"), match.get("right")
        name = self.free_field(left)
        values = self.right_values(right, rule)
        if name is not None and values is not None:
            inside = self.matching(match, name, op, values, path.get(name))
            if inside is not None:
                outside = path.get(name) - inside
                return ([path.with_field(name, inside)] if inside else [],
                        [path.with_field(name, outside)] if outside else [])
        known, value = self.fixed_value(left) if name is None else (None, None)
        if known and value is None:
            return [], [path]                     # header absent: never matches
        how = "not understood"
        if known and values is not None:
            options = value if isinstance(value, frozenset) else (value,)
            hits = {self.fixed_matches(op, v, values) for v in options}
            if hits == {True}:
                return [path], []
            if hits == {False}:
                return [], [path]
            if None not in hits:
                how = "holds for some new packets and not others"
        note = f"{self.where(rule_key(rule), rule)} (match '{render_expr({'match': match})}' " \
               f"{how}, assumed either way)"
        return [path.noted(note)], [path]

    def matching(self, match, name, op, values, domain: frozenset) -> frozenset | None:
        """The part of ``domain`` where ``name op values`` holds (None: not understood).
        ``match`` (kept alive in the cache) identifies the expression."""
        cached = self.hits.get(id(match))
        if cached is None:
            cached = (match, self.full_hit(name, op, values))
            self.hits[id(match)] = cached
        hit = cached[1]
        if hit is None:
            return None
        return domain & hit if op != "!=" else domain - hit

    def full_hit(self, name, op, values) -> frozenset | None:
        """The representatives of the whole field that ``name op values``
        selects (for '!=' the ones equal to a value: the caller subtracts)."""
        universe = self.universe[name]
        if name in ("iif", "oif"):
            pats = [str(v) for v in values]
            return frozenset(n for n in universe if any(_iface_match(p, n) for p in pats))
        kind = "port" if name == "dport" else "addr"
        try:
            spans = intervals(values, kind, self.version)
        except ValueError:
            if kind == "addr":                     # the other family's addresses
                return frozenset() if op in ("==", "in", "!=") else None
            return None
        except (OSError, TypeError, KeyError):
            return None
        if op in ("<", ">", "<=", ">="):
            v, top = spans[0][0], 1 << 128
            spans = [{"<": (0, v - 1), "<=": (0, v), ">": (v + 1, top), ">=": (v, top)}[op]]
        elif op not in ("==", "in", "!="):
            return None
        return frozenset(x for x in universe if any(lo <= x <= hi for lo, hi in spans))

    @staticmethod
    def fixed_matches(op, value, values) -> bool | None:
        names = set()
        for v in values:
            v = _unwrap(v)
            if isinstance(v, (dict, list)):
                return None
            names.add(str(v))
        if isinstance(value, tuple):               # a bitmask: the flags set
            hit = any(flag in names for flag in value)
        else:
            aliases = {"tcp": "6", "udp": "17"}
            hit = str(value) in names or aliases.get(str(value)) in names
        if op in ("==", "in"):
            return hit
        if op == "!=":
            return not hit
        return None


def rule_key(rule) -> tuple:
    return rule.get("family"), rule.get("table"), rule.get("chain")


def _iface_match(pattern: str, name: str) -> bool:
    if pattern.endswith("*") and not pattern.endswith("\\*"):
        return name.startswith(pattern[:-1])
    return name == pattern.replace("\\*", "*")


def _with_via(path: Path, where: str) -> Path:
    return Path(path.box, path.notes, path.via + (where,))


def _merge(paths: list[Path]) -> list[Path]:
    """Drop duplicate paths (same box, notes and trail)."""
    return list(dict.fromkeys(paths))


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))


# --- rendering -----------------------------------------------------------------------------------

def render_value(value) -> str:
    if isinstance(value, dict):
        if "prefix" in value:
            return f"{value['prefix'].get('addr')}/{value['prefix'].get('len')}"
        if "range" in value:
            return "-".join(render_value(v) for v in value["range"])
        if "set" in value:
            items = value["set"] if isinstance(value["set"], list) else [value["set"]]
            return "{ " + ", ".join(render_value(_unwrap(v)) for v in items) + " }"
        if "elem" in value:
            return render_value(_unwrap(value))
        if "meta" in value:
            return f"meta {value['meta'].get('key')}"
        if "payload" in value:
            return f"{value['payload'].get('protocol')} {value['payload'].get('field')}"
        if "ct" in value:
            return f"ct {value['ct'].get('key')}"
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, list):
        if len(value) == 2 and isinstance(value[1], dict):
            return f"{render_value(value[0])} : {render_expr(value[1])}"
        return ",".join(render_value(v) for v in value)
    return str(value)


def render_expr(expr) -> str:
    """One statement of a rule in nft's own syntax (roughly)."""
    if not isinstance(expr, dict) or not expr:
        return str(expr)
    kind, body = next(iter(expr.items()))
    if kind == "match" and isinstance(body.get("left"), dict) and "iptables" in body["left"]:
        return str(body["left"]["iptables"])       # an iptables match kept as written
    if kind == "match":
        left = render_value(body.get("left"))
        if left.startswith("meta ") and left[5:] in ("iifname", "oifname", "iif", "oif",
                                                      "l4proto", "nfproto", "mark"):
            left = left[5:] if left[5:] in ("iifname", "oifname", "iif", "oif") else left
        op = body.get("op", "==")
        op = "" if op in ("==", "in") else f"{op} "
        return f"{left} {op}{render_value(body.get('right'))}"
    if kind in ("jump", "goto"):
        return f"{kind} {(body or {}).get('target')}"
    if kind == "vmap":
        data = body.get("data")
        return f"{render_value(body.get('key'))} vmap {render_value(data)}"
    if body is None or kind in ("counter", "log", "reject", "limit"):
        return kind
    return f"{kind} {json.dumps(body, separators=(',', ':'))}"


def render_rule(rule) -> str:
    return " ".join(render_expr(e) for e in rule.get("expr", []))


# --- the question ---------------------------------------------------------------------------------

def evaluate(ruleset: Ruleset, hook: str, version: int, approved: dict[str, list[tuple[int, int]]],
             *, dormant: set | None = None, source: str = "nft -j list ruleset") -> Answer:
    """Can a new tcp or udp packet from outside get through ``hook`` for IP
    ``version``? On input, only ports not in ``approved[proto]`` count; on
    forward, every port does. The first open transport decides."""
    denied, unknown = [], []
    for proto in ("tcp", "udp"):
        ports = approved.get(proto, []) if hook == "input" else []
        answer = Evaluator(ruleset, hook, version, proto, ports, dormant).run(source)
        if answer.open:
            return answer
        denied += answer.denied_by
        unknown += answer.unknown
    return Answer(False, denied_by=_unique(denied), unknown=_unique(unknown))


def evaluate_sources(ruleset: Ruleset, version: int, ports: list[tuple[int, int]],
                     sources: list, *, dormant: set | None = None,
                     source: str = "nft -j list ruleset") -> Answer:
    """Can a new TCP connection to one of ``ports`` on the input hook come from
    an address outside ``sources`` (ipaddress networks)? The management
    question of GB/T 22239 8.1.4.4 c)."""
    allowed = [(int(n.network_address), int(n.broadcast_address)) for n in sources]
    return Evaluator(ruleset, "input", version, "tcp", [], dormant, only_ports=ports,
                     allowed_sources=allowed).run(source)


def _complement(ranges: list[tuple[int, int]], top: int) -> list[tuple[int, int]]:
    """The ports 0..top not in ``ranges``."""
    out, start = [], 0
    for lo, hi in sorted(ranges):
        if lo > start:
            out.append((start, lo - 1))
        start = max(start, hi + 1)
    if start <= top:
        out.append((start, top))
    return out


def dormant_tables(ruleset: Ruleset, text_listing: str | None) -> tuple[set, list[str]]:
    """Tables to skip, and notes on tables whose flags could not be read.
    ``text_listing`` (``nft list ruleset``) settles flags the JSON garbles;
    without it such a table counts as dormant, so its drops never make a pass."""
    from_text = dormant_from_text(text_listing) if text_listing is not None else None
    dormant, notes = set(), []
    for key, table in ruleset.tables.items():
        flag = table_flags_dormant(table)
        if from_text is not None and table.get("flags") is not None:
            flag = key in from_text
        if flag is None:
            notes.append(f"table {key[0]} {key[1]}: flags unreadable "
                         f"({table.get('flags')!r}), taken as dormant")
            flag = True
        if flag:
            dormant.add(key)
    if from_text:
        dormant |= from_text
    return dormant, notes
