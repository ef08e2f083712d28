"""Removable-media and network policy checks (R-MED-1, R-MED-2, R-NET-1, R-NET-3,
R-NET-4, R-NET-5; GB/T 22239-2019 level 3 boundary protection).

Layout, one job per module:

    model       statuses, findings, per-check and per-host results
    parsers     pure parsers: modprobe.d, sysctl.d, /proc/net/*, routes, nft JSON, ...
    probe       reads facts through the Host interface (cached, n/a-aware)
    catalogue   the check catalogue: id, rule ids, GB/T 22239 clause, CIS control
    media       removable-media checks
    network     network, wireless, firewall, DNS and antivirus checks
    policyfile  policy files (configs/policies/*.yaml), validated with file:line:key
    fleet       run a policy on one host, or on many hosts at once
    store       stored runs in the state directory and drift between runs
    report      Result tables and JUnit XML

Domain code never prints and never imports click; it returns results.
"""
