"""nftables_eval on hand-written ``nft -j`` rulesets (R-NET-5): the four false
passes of issue #18, verdict semantics, and the conservative answer for what
it does not understand. The kernel itself is the oracle in
tests/integration/policy/test_policy_nft_differential.py."""
import json

from opskit.policy import nftables_eval as E

ROLE = {"tcp": [(22, 22)], "udp": []}
DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}
SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}


def match(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


def ruleset(chains: dict, *, family="inet", table="f", flags=None, sets=()) -> E.Ruleset:
    """chains: name -> (hook or None, prio, policy, [rule expr lists])."""
    tab = {"family": family, "name": table, "handle": 1}
    if flags is not None:
        tab["flags"] = flags
    items, handle = [{"table": tab}], 10
    items += [{"set": {"family": family, "table": table, **s}} for s in sets]
    for name, (hook, prio, policy, rules) in chains.items():
        chain = {"family": family, "table": table, "name": name, "handle": handle}
        if hook:
            chain.update(type="filter", hook=hook, prio=prio, policy=policy)
        items.append({"chain": chain})
        for expr in rules:
            handle += 1
            items.append({"rule": {"family": family, "table": table, "chain": name,
                                   "handle": handle, "expr": expr}})
    return E.Ruleset.from_json(json.dumps({"nftables": items}))


def answer(rs, hook="input", version=4, dormant=None):
    return E.evaluate(rs, hook, version, ROLE, dormant=dormant)


TEXTBOOK = [[match({"ct": {"key": "state"}}, ["established", "related"], "in"), {"accept": None}],
            [match({"meta": {"key": "iif"}}, "lo"), {"accept": None}],
            [match(DPORT, 22), {"accept": None}]]


def test_textbook_default_deny_is_closed():
    a = answer(ruleset({"input": ("input", 0, "drop", TEXTBOOK)}))
    assert not a.open and a.denied_by == ["nft -j list ruleset: chain inet f input (hook input) "
                                          "policy drop"]


def test_accept_rule_first_is_open_and_named():          # issue #18 case 1
    a = answer(ruleset({"input": ("input", 0, "drop", [[{"accept": None}], *TEXTBOOK])}))
    assert a.open and a.via == ["nft -j list ruleset: inet f input handle 11: accept"]


def test_jump_to_accept_all_chain_is_open():             # issue #18 case 2
    rs = ruleset({"allow": (None, 0, None, [[{"counter": None}, {"accept": None}]]),
                  "input": ("input", 0, "drop", [[match(DPORT, 22), {"accept": None}],
                                                 [{"jump": {"target": "allow"}}]])})
    a = answer(rs)
    assert a.open and a.via == ["nft -j list ruleset: inet f allow handle 11: counter accept"]


def test_saddr_any_before_drop_opens_ipv4_only():        # issue #18 case 3
    any4 = match(SADDR, {"prefix": {"addr": "0.0.0.0", "len": 0}})
    rs = ruleset({"input": ("input", 0, "accept", [[any4, {"accept": None}], [{"drop": None}]])})
    assert answer(rs, version=4).open
    assert "ip saddr 0.0.0.0/0 accept" in answer(rs, version=4).via[0]
    assert not answer(rs, version=6).open


def test_private_source_accept_still_lets_outsiders_in_from_there():
    # an outsider may come from 10.0.0.0/8 too: the port is reachable
    rs = ruleset({"input": ("input", 0, "drop", [
        [match(SADDR, {"prefix": {"addr": "10.0.0.0", "len": 8}}), {"accept": None}]])})
    a = answer(rs)
    assert a.open and "from 10.0.0.0" in a.witness


def test_dormant_table_is_ignored():                     # issue #18 case 4
    rs = ruleset({"input": ("input", 0, "drop", [])}, flags="dormant")
    dormant, notes = E.dormant_tables(rs, None)
    assert dormant == {("inet", "f")} and not notes
    assert answer(rs, dormant=dormant).open
    assert not answer(rs, dormant=set()).open


def test_garbled_table_flags_use_the_text_listing_else_count_as_dormant():
    rs = ruleset({"input": ("input", 0, "drop", [])}, flags="inet")       # nft 1.0.6 garbage
    dormant, notes = E.dormant_tables(rs, None)
    assert dormant == {("inet", "f")} and "flags unreadable" in notes[0]
    dormant, notes = E.dormant_tables(rs, "table inet f {\n\tchain input {\n\t}\n}\n")
    assert dormant == set() and not notes
    dormant, _ = E.dormant_tables(rs, "table inet f {\n\tflags dormant\n}\n")
    assert dormant == {("inet", "f")}


def test_later_base_chain_drop_wins_over_earlier_accept():
    early = ruleset({"input": ("input", -10, "accept", [[{"accept": None}]])}, table="a")
    late = ruleset({"input": ("input", 10, "drop", [[match(DPORT, 22), {"accept": None}]])},
                   table="b")
    early.merge(late)
    assert not answer(early).open


def test_goto_return_reaches_policy_and_jump_return_continues():
    check = [[match(DPORT, 22), {"accept": None}], [{"return": None}]]
    goto = ruleset({"check": (None, 0, None, check),
                    "input": ("input", 0, "drop", [[{"goto": {"target": "check"}}],
                                                   [{"accept": None}]])})
    assert not answer(goto).open
    jump = ruleset({"check": (None, 0, None, check),
                    "input": ("input", 0, "drop", [[{"jump": {"target": "check"}}],
                                                   [{"accept": None}]])})
    assert answer(jump).open


def test_sets_and_ranges_split_ports_exactly():
    rs = ruleset({"input": ("input", 0, "drop", [
        [match(DPORT, "@allowed"), {"accept": None}]])},
        sets=[{"name": "allowed", "type": "inet_service", "elem": [22]}])
    assert not answer(rs).open
    rs = ruleset({"input": ("input", 0, "drop", [
        [match(DPORT, {"set": [22, {"range": [8000, 8100]}]}), {"accept": None}]])})
    a = answer(rs)
    assert a.open and "to port 8000" in a.witness


def test_drop_of_one_port_then_accept_is_open_on_another():
    rs = ruleset({"input": ("input", 0, "drop", [[match(DPORT, 8080), {"drop": None}],
                                                 [{"accept": None}]])})
    assert answer(rs).open


def test_udp_port_not_approved_is_found():
    udp = {"payload": {"protocol": "udp", "field": "dport"}}
    rs = ruleset({"input": ("input", 0, "drop", [[match(udp, 53), {"accept": None}]])})
    a = answer(rs)
    assert a.open and a.witness.startswith("new udp packet") and "to port 53" in a.witness


def test_verdict_map_on_ct_state_and_port():
    rs = ruleset({"web": (None, 0, None, [[{"accept": None}]]),
                  "input": ("input", 0, "drop", [
                      [{"vmap": {"key": {"ct": {"key": "state"}},
                                 "data": {"set": [["established", {"accept": None}],
                                                  ["invalid", {"drop": None}]]}}}],
                      [{"vmap": {"key": DPORT,
                                 "data": {"set": [[22, {"accept": None}],
                                                  [8080, {"jump": {"target": "web"}}]]}}}]])})
    a = answer(rs)
    assert a.open and "to port 8080" in a.witness


def test_unknown_match_is_assumed_either_way_and_named():
    mark = match({"meta": {"key": "mark"}}, 7)
    rs = ruleset({"input": ("input", 0, "drop", [[mark, {"accept": None}]])})
    a = answer(rs)
    assert a.open and "meta mark 7" in a.unknown[0] and "not understood" in a.unknown[0]


def test_unknown_statement_may_accept():
    rs = ruleset({"input": ("input", 0, "drop", [[{"queue": {"num": 1}}]])})
    assert answer(rs).open


def test_forward_counts_every_port_and_no_base_chain_means_open():
    rs = ruleset({"forward": ("forward", 0, "accept", [[match(DPORT, 22), {"drop": None}]])})
    a = answer(rs, hook="forward")
    assert a.open and "policy accept" in a.via[0]
    assert answer(ruleset({}), hook="input").open


def test_loopback_only_is_closed():
    rs = ruleset({"input": ("input", 0, "drop", [
        [match({"meta": {"key": "iifname"}}, "lo"), {"accept": None}]])})
    assert not answer(rs).open


def test_text_listing_helpers():
    text = "table inet f {\n\tflags dormant\n\tchain c {\n\t}\n}\ntable ip g {\n}\n"
    assert E.tables_from_text(text) == [("inet", "f"), ("ip", "g")]
    assert E.dormant_from_text(text) == {("inet", "f")}


def test_final_unconditional_drop_counts_and_conditional_does_not():
    final = ruleset({"input": ("input", 0, "accept", [[{"counter": None}, {"drop": None}]])})
    assert not answer(final).open
    conditional = ruleset({"input": ("input", 0, "accept", [[match(DPORT, 23), {"drop": None}]])})
    assert answer(conditional).open


# --- packet state the ruleset itself changes (false passes found against the kernel) ----------

CT_STATE = {"ct": {"key": "state"}}
CT_STATUS = {"ct": {"key": "status"}}
ESTABLISHED = match(CT_STATE, {"set": ["established", "related"]})


def test_a_set_filled_at_packet_time_holds_more_than_its_listed_elements():
    add = {"set": {"op": "add", "elem": SADDR, "set": "@seen"}}
    rules = [[ESTABLISHED, {"accept": None}], [match(DPORT, 8080), add],
             [match(SADDR, "@seen"), {"accept": None}]]
    dynamic = ruleset({"input": ("input", 0, "drop", rules)},
                      sets=[{"name": "seen", "type": "ipv4_addr", "flags": ["dynamic"]}])
    a = answer(dynamic)
    assert a.open and any("@seen" in u for u in a.unknown)
    # the same empty set that no rule fills stays exact: nobody is in it
    static = ruleset({"input": ("input", 0, "drop", [rules[0], rules[2]])},
                     sets=[{"name": "seen", "type": "ipv4_addr"}])
    assert not answer(static).open


def test_ct_status_dnat_counts_only_where_the_ruleset_translates_addresses():
    rules = [[ESTABLISHED, {"accept": None}], [match(CT_STATUS, "dnat"), {"accept": None}]]
    plain = ruleset({"input": ("input", 0, "drop", rules)})     # firewalld without forwards
    assert not answer(plain).open
    nat = ruleset({"input": ("input", 0, "drop", rules),
                   "pre": ("prerouting", -100, "accept",
                           [[match(DPORT, 2222), {"redirect": {"port": 22}}]])})
    a = answer(nat)
    assert a.open and any("ct status dnat" in u for u in a.unknown)


def test_notrack_makes_new_packets_untracked():
    rules = [[ESTABLISHED, {"accept": None}], [match(CT_STATE, "new"), {"drop": None}]]
    tracked = ruleset({"input": ("input", 0, "accept", rules)})
    assert not answer(tracked).open
    untracked = ruleset({"input": ("input", 0, "accept", rules),
                         "raw": ("prerouting", -300, "accept", [[{"notrack": None}]])})
    assert answer(untracked).open


def test_ip6_nexthdr_may_name_an_extension_header_not_the_transport():
    v6 = {"payload": {"protocol": "ip6", "field": "nexthdr"}}
    v4 = {"payload": {"protocol": "ip", "field": "protocol"}}
    rs = ruleset({"input": ("input", 0, "accept", [[ESTABLISHED, {"accept": None}],
                                                   [match(v4, "tcp"), {"drop": None}],
                                                   [match(v6, "tcp"), {"drop": None}],
                                                   [match({"meta": {"key": "l4proto"}}, "udp"),
                                                    {"drop": None}]])})
    assert not answer(rs, version=4).open       # IPv4 options are not a header of their own
    assert answer(rs, version=6).open           # a destination-options header comes first


def test_class_e_sources_are_outsiders():
    rs = ruleset({"input": ("input", 0, "drop", [[match(SADDR, {"prefix": {"addr": "240.0.0.0",
                                                                           "len": 4}}),
                                                  {"accept": None}]])})
    assert answer(rs).open


def test_an_interface_wildcard_matches_longer_names_than_lo():
    iif = {"meta": {"key": "iifname"}}
    exact = ruleset({"input": ("input", 0, "drop", [[match(iif, "lo"), {"accept": None}]])})
    assert not answer(exact).open
    wild = ruleset({"input": ("input", 0, "drop", [[match(iif, "lo*"), {"accept": None}]])})
    assert answer(wild).open                    # lowpan0 is an outside interface


def test_ipv6_counts_as_enabled_when_one_interface_turned_it_back_on(tmp_path):
    from opskit.hosts.local import LocalHost
    from opskit.policy.network import ipv6_enabled
    from opskit.policy.probe import Probe
    conf = tmp_path / "proc/sys/net/ipv6/conf"
    for iface, value in (("all", "1"), ("default", "1"), ("lo", "1"), ("ext0", "1")):
        (conf / iface).mkdir(parents=True)
        (conf / iface / "disable_ipv6").write_text(value + "\n")
    assert not ipv6_enabled(Probe(LocalHost("t", sysroot=str(tmp_path))))
    (conf / "ext0" / "disable_ipv6").write_text("0\n")
    assert ipv6_enabled(Probe(LocalHost("t", sysroot=str(tmp_path))))
