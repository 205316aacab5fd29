"""Frame sources: GenICam cameras (harvesters), folders, replays, synthetic parts."""
