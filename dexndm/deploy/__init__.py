"""Deploy (DexNDM Sec. 3.4, 4.4): the last mile from checkpoints to a LEAP hand.

``protocol`` Dynamixel Protocol 2.0 codec; ``emulator`` a pty bus of emulated motors (with
fault injection); ``bus`` / ``leap_hand`` the real driver on ``dynamixel_sdk``; ``sim_hand``
/ ``emulated_hand`` the same interface over a MuJoCo target domain; ``hands`` picks one by
config; ``export`` deploy bundles; ``loop`` (with ``safety``, ``commands``, ``recorder``) the
20 Hz control loop; ``testing`` tiny checkpoints for tests and benchmarks.
"""
