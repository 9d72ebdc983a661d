"""Framework plugins that exist only to test the plugin contract."""
