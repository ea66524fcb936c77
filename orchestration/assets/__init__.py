"""Assets: SFTP imports (one dynamic partition per file) and exports."""
