"""Deploy: Dynamixel Protocol 2.0 codec, pty bus emulator (hardware driver and control loop build on these)."""
