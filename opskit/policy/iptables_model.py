"""``iptables-save`` / ``ip6tables-save`` output as an nftables ruleset (R-NET-5).

Pure: the save text (legacy x_tables, or iptables-nft's) becomes the
``nftables_eval.Ruleset`` model -- tables ``ip``/``ip6`` with the built-in
chains as base chains on their hooks (filter at priority 0, mangle -150,
security 50), each chain's policy, the rules in order with their matches in
nft JSON form and their targets as verdicts -- so legacy rulesets are judged
with the same kernel semantics as nftables ones (issue #18: an ACCEPT rule
before a DROP policy is not a default deny).

What it translates: ``-s``/``-d`` (incl. ``0.0.0.0/0``), ``-p``,
``--dport``/``--dports`` (ranges ``a:b``, ``-m multiport``), ``-i``/``-o``
(``eth+`` wildcards), ``-m iprange``, ``-m state --state`` /
``-m conntrack --ctstate``, each with ``!``; targets ACCEPT, DROP, REJECT,
RETURN, user chains (``-j`` jump, ``-g`` goto); LOG, MARK and the like do not
decide. Anything else -- a match it does not know, or an option of one it
knows -- becomes a match the evaluator takes both ways, and an unknown target
one that may accept: either can only turn a pass into a fail.
The nat and raw tables are left out: leaving a drop out can only open.
"""
from __future__ import annotations

import shlex

from . import nftables_eval as E

# built-in chains that see a new inbound or forwarded packet: table -> priority
TABLE_PRIORITY = {"filter": 0, "mangle": -150, "security": 50}
HOOK_OF = {"INPUT": "input", "FORWARD": "forward", "OUTPUT": "output",
           "PREROUTING": "prerouting", "POSTROUTING": "postrouting"}
VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject", "RETURN": "return"}
# targets that neither accept nor drop (the packet goes on to the next rule)
NON_TERMINAL = {"LOG", "NFLOG", "ULOG", "MARK", "CONNMARK", "CONNSECMARK", "SECMARK", "TCPMSS",
                "TOS", "DSCP", "TTL", "HL", "CLASSIFY", "AUDIT", "TRACE", "CT", "NOTRACK",
                "CHECKSUM", "IDLETIMER", "LED", "SET", "RATEEST", "TEE", "TCPOPTSTRIP"}
# matches whose options are all translated (others are taken both ways)
NEUTRAL_MATCHES = {"tcp", "udp", "comment", "state", "conntrack", "multiport", "iprange"}
CT_STATES = {"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"}


class Unparsed(ValueError):
    """A line that is not an iptables-save rule (the caller notes it)."""


def ruleset_from_save(text: str, version: int) -> tuple[E.Ruleset, list[str]]:
    """The ``iptables-save`` (version 4) or ``ip6tables-save`` (6) text as a
    Ruleset, and notes on lines that could not be read (each counted as an
    'accept anything' rule where it stood, so it can only open)."""
    family = "ip" if version == 4 else "ip6"
    rs, notes = E.Ruleset(), []
    table, handle, user = None, 0, {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("[") and "]" in line:      # iptables-save -c: packet counters
            line = line.split("]", 1)[1].strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:].strip()
            rs.tables[(family, table)] = {"family": family, "name": table}
            continue
        if table is None:
            continue
        if line.startswith(":"):
            name = _chain(rs, family, table, line)
            if name and name not in HOOK_OF:
                user.setdefault(table, set()).add(name)
            continue
        if not line.startswith(("-A ", "-I ")):
            continue
        handle += 1
        words, position = line.split(), None
        if words[0] == "-I":                         # insert: at the head, or at a number
            position = int(words.pop(2)) - 1 if len(words) > 2 and words[2].isdigit() else 0
        try:
            chain, expr = rule_exprs(" ".join(words) if position else line, version,
                                     user.get(table, set()))
        except Unparsed as exc:
            chain = line.split()[1] if len(line.split()) > 1 else "?"
            expr = [_unknown(f"{line} ({exc})"), {"accept": None}]
            notes.append(f"line {number} not understood ({exc}): taken as accept")
        rules = rs.rules.setdefault((family, table, chain), [])
        rules.insert(len(rules) if position is None else position,
                     {"family": family, "table": table, "chain": chain, "handle": handle,
                      "expr": expr, "line": number, "text": line})
    return rs, notes


def _chain(rs: E.Ruleset, family: str, table: str, line: str) -> str | None:
    """':NAME POLICY [p:b]': a built-in chain of a judged table becomes a base
    chain. Returns the chain's name."""
    words = line[1:].split()
    if not words:
        return None
    name = words[0]
    chain = {"family": family, "table": table, "name": name}
    policy = words[1] if len(words) > 1 else "-"
    if policy != "-" and table in TABLE_PRIORITY and name in HOOK_OF:
        chain.update(type="filter", hook=HOOK_OF[name], prio=TABLE_PRIORITY[table],
                     policy="drop" if policy == "DROP" else "accept")
    rs.chains[(family, table, name)] = chain
    return name


def rule_exprs(line: str, version: int, chains: set[str] = frozenset()) -> tuple[str, list]:
    """('CHAIN', nft JSON statements) of one '-A CHAIN ...' line; ``chains`` are
    the table's user-defined chains (a '-j' to one of them is a jump)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise Unparsed(str(exc)) from None
    if len(words) < 2:
        raise Unparsed("no chain")
    chain, rest = words[1], words[2:]
    exprs, verdict, module, i = [], None, None, 0
    while i < len(rest):
        negate = rest[i] == "!"
        if negate:
            i += 1
        if i >= len(rest):
            raise Unparsed("'!' at the end")
        opt, i = rest[i], i + 1
        args = []
        while i < len(rest) and rest[i] != "!" and not rest[i].startswith("-"):
            args.append(rest[i])          # an option's values never start with '-'
            i += 1
        arg = args[0] if len(args) == 1 else None
        if opt in ("-m", "--match"):
            module = arg
            if arg not in NEUTRAL_MATCHES:
                exprs.append(_unknown(_module_text(rest, i, arg)))
            continue
        if opt in ("-j", "--jump", "-g", "--goto"):
            verdict = _target(arg, goto=opt in ("-g", "--goto"), chains=chains, rest=rest[i:])
            break
        got = _option(opt, arg, negate, module, version)
        if got is None:
            exprs.append(_unknown(" ".join(["!"] * negate + [opt, *args])))
        else:
            exprs.append(got)
    return chain, exprs + ([verdict] if verdict else [])


def _option(opt, arg, negate, module, version):
    """One match option as an nft match, or None when not translated."""
    op = "!=" if negate else "=="
    ipname = "ip" if version == 4 else "ip6"
    if arg is None:
        return None
    if opt in ("-s", "--source", "-d", "--destination"):
        field = "saddr" if opt in ("-s", "--source") else "daddr"
        return _match(op, {"payload": {"protocol": ipname, "field": field}}, _addresses(arg))
    if opt in ("--src-range", "--dst-range") and module == "iprange":
        lo, _, hi = arg.partition("-")
        field = "saddr" if opt == "--src-range" else "daddr"
        return _match(op, {"payload": {"protocol": ipname, "field": field}},
                      {"set": [{"range": [lo, hi or lo]}]})
    if opt in ("-p", "--protocol"):
        if arg.lower() in ("all", "0"):
            return {"counter": None} if not negate else _match("==", {"meta": {"key": "l4proto"}},
                                                               "none")
        return _match(op, {"meta": {"key": "l4proto"}}, arg.lower())
    if opt in ("-i", "--in-interface", "-o", "--out-interface"):
        key = "iifname" if opt in ("-i", "--in-interface") else "oifname"
        name = arg[:-1] + "*" if arg.endswith("+") else arg
        return _match(op, {"meta": {"key": key}}, name)
    if opt in ("--dport", "--destination-port", "--dports", "--destination-ports") \
            and (module is None or module in NEUTRAL_MATCHES):
        return _ports(op, arg, module)
    if opt in ("--state", "--ctstate") and module in ("state", "conntrack"):
        states = arg.upper().split(",")
        if not set(states) <= CT_STATES:
            return None
        return _match(op, {"ct": {"key": "state"}}, {"set": [s.lower() for s in states]})
    if opt in ("--comment",) and module == "comment":
        return {"counter": None}
    return None


def _ports(op, arg, module):
    """'22', '8000:8080', '22,80,8000:8080' as a dport match on the rule's protocol."""
    items = []
    for part in arg.split(","):
        lo, colon, hi = part.partition(":")
        if not lo.isdigit() or (colon and hi and not hi.isdigit()):
            return None
        items.append({"range": [int(lo), int(hi or 65535)]} if colon else int(lo))
    # the protocol is fixed by '-p' earlier in the rule; 'th' reads it for either
    return _match(op, {"payload": {"protocol": "th", "field": "dport"}}, {"set": items})


def _addresses(arg: str) -> dict:
    """'10.0.0.0/8' or '1.2.3.4,5.6.7.8' as an nft set of prefixes."""
    items = []
    for part in arg.split(","):
        addr, slash, length = part.partition("/")
        if slash and not length.isdigit():
            raise Unparsed(f"address mask {length} is not a prefix length")
        items.append({"prefix": {"addr": addr, "len": int(length)}} if slash else addr)
    return {"set": items}


def _target(name, *, goto, chains, rest):
    """The statement for '-j NAME' / '-g NAME'; ``rest`` are the target's options."""
    if name is None:
        raise Unparsed("-j without a target")
    if name in chains:
        return {"goto" if goto else "jump": {"target": name}}
    if name in VERDICTS and not goto:
        return {VERDICTS[name]: None}
    if name in NON_TERMINAL and not goto:
        return {"counter": None}
    # NFQUEUE, TARPIT, an undeclared chain...: something else decides; it may accept
    return {"iptables-target": " ".join(["-g" if goto else "-j", name, *rest])}


def _module_text(rest, i, name) -> str:
    """'-m NAME --opt val ...' up to the next '-m', '-j' or '-g'."""
    stop = next((k for k in range(i, len(rest)) if rest[k] in ("-m", "-j", "-g", "--match",
                                                               "--jump", "--goto")), len(rest))
    return " ".join(["-m", name or "?", *rest[i:stop]])


def _match(op, left, right) -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _unknown(text: str) -> dict:
    """A match the evaluator does not understand: taken both ways."""
    return _match("==", {"iptables": text}, True)
