"""iptables-save output judged with the nftables evaluator (R-NET-5, issue #18):
an ACCEPT rule before a DROP policy is not a default deny, whatever the chain
policy says. The kernel is the oracle in
tests/integration/policy/test_policy_iptables_differential.py."""
import pytest

from opskit.policy import iptables_model as IPT
from opskit.policy import nftables_eval as E
from opskit.policy.model import FAIL, PASS
from tests.fixtures.policy.trees import good_tree, write
from tests.unit.policy.test_policy_media import evidence, messages, run

ROLE = {"tcp": [(22, 22)], "udp": []}
HEAD = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
TEXTBOOK = ("-A INPUT -i lo -j ACCEPT\n"
            "-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n"
            "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n")


def answer(rules: str, *, head=HEAD, hook="input", version=4, chains=""):
    rs, notes = IPT.ruleset_from_save(head + chains + rules + "COMMIT\n", version)
    assert notes == []
    return E.evaluate(rs, hook, version, ROLE, source="iptables-save")


def test_textbook_is_closed():
    a = answer(TEXTBOOK)
    assert not a.open and a.denied_by == ["iptables-save: chain ip filter INPUT (hook input) "
                                          "policy drop"]
    assert not answer(TEXTBOOK, hook="forward").open


def test_accept_before_drop_policy_is_open_and_named():     # the false pass of today
    a = answer("-A INPUT -j ACCEPT\n" + TEXTBOOK)
    assert a.open and a.via == ["iptables-save:5: -A INPUT -j ACCEPT"]


@pytest.mark.parametrize("rule", ["-A INPUT -s 0.0.0.0/0 -j ACCEPT",
                                  "-A INPUT -s 0.0.0.0/0 -d 0.0.0.0/0 -p tcp -j ACCEPT",
                                  "-A INPUT -p tcp -m multiport --dports 22,8000:8080 -j ACCEPT",
                                  "-A INPUT -p tcp -m tcp --dport 1024:65535 -j ACCEPT",
                                  "-A INPUT -p tcp -m tcp ! --dport 22 -j ACCEPT",
                                  "-A INPUT -m conntrack --ctstate NEW -j ACCEPT",
                                  "-A INPUT -m state ! --state INVALID -j ACCEPT",
                                  "-A INPUT -s 10.0.0.0/8 -j ACCEPT",
                                  "-A INPUT -i eth+ -j ACCEPT",
                                  "-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.9 -j ACCEPT",
                                  "-A INPUT -p udp -m udp --dport 53 -j ACCEPT"])
def test_accepting_rules_open_input(rule):
    assert answer(rule + "\n" + TEXTBOOK).open


@pytest.mark.parametrize("rule", ["-A INPUT -i lo -j ACCEPT",
                                  "-A INPUT -s 127.0.0.0/8 -j ACCEPT",
                                  "-A INPUT -p tcp -m multiport --dports 22 -j ACCEPT",
                                  "-A INPUT -p icmp -j ACCEPT",
                                  "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                                  "-A INPUT -o eth0 -j ACCEPT",           # no out iface on input
                                  "-A INPUT -p tcp -m comment --comment \"ssh -j ACCEPT\" "
                                  "--dport 22 -j ACCEPT",
                                  "-A INPUT -j LOG --log-prefix \"in: \""])
def test_rules_that_do_not_open(rule):
    a = answer(rule + "\n" + TEXTBOOK)
    assert not a.open, a


def test_accept_policy_with_final_drop_rule_is_closed():
    head = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
    assert not answer(TEXTBOOK + "-A INPUT -j DROP\n", head=head).open
    assert answer(TEXTBOOK + "-A INPUT -p tcp -j DROP\n", head=head).open       # udp gets in
    assert answer(TEXTBOOK, head=head, hook="forward").open


def test_user_chains_jump_return_and_goto():
    chains = ":ALLOW - [0:0]\n:DOCKER-USER - [0:0]\n"
    assert answer("-A INPUT -j ALLOW\n-A ALLOW -j ACCEPT\n", chains=chains).open
    assert not answer("-A INPUT -j ALLOW\n-A ALLOW -j RETURN\n-A ALLOW -j ACCEPT\n",
                      chains=chains).open
    # upper-case user chains (Docker's) are chains, not unknown targets
    a = answer("-A INPUT -j DOCKER-USER\n-A DOCKER-USER -s 10.0.0.0/8 -j ACCEPT\n",
               chains=chains)
    assert a.open and a.unknown == []
    # goto: the chain's end applies the base chain's policy, no coming back
    assert not answer("-A INPUT -g ALLOW\n-A INPUT -j ACCEPT\n", chains=chains).open


def test_unknown_match_and_target_are_taken_as_may_accept():
    a = answer("-A INPUT -p tcp -m recent --rcheck --seconds 60 --name ssh -j ACCEPT\n")
    assert a.open and "-m recent --rcheck --seconds 60 --name ssh" in a.unknown[0]
    assert answer("-A INPUT -p tcp -m tcp --tcp-flags SYN,ACK SYN -j ACCEPT\n").open
    a = answer("-A INPUT -j NFQUEUE --queue-num 1\n")
    assert a.open and "NFQUEUE" in a.unknown[0]
    # an unknown match on a DROP cannot make a pass: the ACCEPT after it still opens
    assert answer("-A INPUT -m recent --update -j DROP\n-A INPUT -j ACCEPT\n").open


def test_negated_source_and_insert():
    assert answer("-A INPUT ! -s 10.0.0.0/8 -j DROP\n-A INPUT -j ACCEPT\n").open
    assert not answer("-A INPUT ! -s 10.0.0.0/8 -j DROP\n-A INPUT -s 10.0.0.0/8 -j DROP\n"
                      "-A INPUT -j ACCEPT\n").open
    # -I puts the rule first
    assert answer("-A INPUT -j DROP\n-I INPUT -j ACCEPT\n").open
    assert not answer("-A INPUT -j DROP\n-I INPUT 2 -j ACCEPT\n").open


def test_ip6tables_and_counters():
    head = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n"
    assert not answer("[3:180] -A INPUT -s ::1/128 -j ACCEPT\n", head=head, version=6).open
    assert answer("[3:180] -A INPUT -s ::/0 -j ACCEPT\n", head=head, version=6).open


def test_mangle_and_security_tables_count_nat_does_not_deny():
    mangle = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT DROP [0:0]\nCOMMIT\n"
    rs, _ = IPT.ruleset_from_save(mangle + HEAD.replace("DROP", "ACCEPT") + "COMMIT\n", 4)
    assert not E.evaluate(rs, "input", 4, ROLE).open
    nat = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n"
    rs, _ = IPT.ruleset_from_save(nat + HEAD.replace("DROP", "ACCEPT") + "COMMIT\n", 4)
    assert E.evaluate(rs, "input", 4, ROLE).open


def test_unreadable_line_counts_as_accept():
    rs, notes = IPT.ruleset_from_save(HEAD + "-A INPUT -m comment --comment \"x\n"
                                      + TEXTBOOK + "COMMIT\n", 4)
    assert notes and "line 5" in notes[0]
    assert E.evaluate(rs, "input", 4, ROLE).open


# --- through the check, on a recorded tree -------------------------------------------------

@pytest.fixture
def tree(tmp_path):
    root = good_tree(tmp_path / "host")
    write(root, {"/.opskit-recorded/nft-ruleset.json": None,
                 "/proc/sys/net/ipv6/conf/all/disable_ipv6": "1\n"})
    return root


def test_check_fails_on_accept_before_drop_policy(tree):
    write(tree, {"/.opskit-recorded/iptables-save":
                 HEAD + "-A INPUT -p tcp -m multiport --dports 22,80 -j ACCEPT\n" + TEXTBOOK
                 + "COMMIT\n"})
    result = run(tree, "net.firewall-default-deny")
    assert result.status == FAIL, evidence(result)
    assert messages(result).startswith("IPv4 input is not denied by default")
    assert "/.opskit-recorded/iptables-save:5: -A INPUT -p tcp -m multiport --dports 22,80 " \
           "-j ACCEPT" in result.findings[0].evidence


def test_check_reads_legacy_tables_behind_iptables_nft(tree):
    # iptables-nft shows no tables (it warns about legacy ones on stderr only)
    write(tree, {"/.opskit-recorded/iptables-save": "",
                 "/.opskit-recorded/iptables-legacy-save": HEAD + TEXTBOOK + "COMMIT\n"})
    result = run(tree, "net.firewall-default-deny")
    assert result.status == PASS, evidence(result)
    assert "/.opskit-recorded/iptables-legacy-save: chain ip filter INPUT" in evidence(result)
