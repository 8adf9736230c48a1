"""Command-line applications behind ``dexndm <command>``: thin Hydra shells around
plain functions that tests call directly."""
