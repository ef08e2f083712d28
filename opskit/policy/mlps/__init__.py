"""The MLPS 2.0 level-3 host baseline (等保三级 安全计算环境, GB/T 22239-2019
8.1.4), run by ``opskit policy check --profile mlps3``.

One module per clause family, every check registered in the catalogue under
the ``mlps3`` profile with its clause, rule, severity and remediation:

    auth       身份鉴别 8.1.4.1      access     访问控制 8.1.4.2
    audit      安全审计 8.1.4.3      intrusion  入侵防范 8.1.4.4
    malware    恶意代码防范 8.1.4.5  integrity  可信验证 ... 数据备份恢复 8.1.4.6-11
    parse      pure parsers (sshd_config, PAM, shadow, dpkg, logrotate)
    facts      what the checks share, read through the Probe
"""
from . import access, audit, auth, integrity, intrusion, malware  # noqa: F401  (registration)
