"""The `astra` command: launches the whole stack and offers operator tools."""
