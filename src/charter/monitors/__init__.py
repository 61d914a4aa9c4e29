"""Monitors: drift statistics over sliding windows against a baseline, and the alerts they raise.

``drift`` holds the windows and the comparison, ``stats`` the distribution tests, ``webhook`` the
signed alert delivery, ``control`` the registration of the `monitor` control kind, ``cli`` the
`charter status` command.
"""
