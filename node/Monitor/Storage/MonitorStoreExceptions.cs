namespace Appliance.Monitor.Storage;

/// <summary>The base of every error the monitor store raises on purpose.</summary>
public abstract class MonitorStoreException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The store's files are damaged in a way a crash cannot produce: a bad record in the middle of the log (valid
/// records follow it), a damaged snapshot or log header, a gap in the sequence numbers. Nothing is skipped silently:
/// the store refuses to open, and the message names the file and the offset.
/// </summary>
public sealed class MonitorStoreCorruptionException(string path, long offset, string message)
    : MonitorStoreException($"monitor store {path} is damaged at offset {offset}: {message}; restore this monitor from its peers (remove the directory and let it resync) or from a backup")
{
    public string Path { get; } = path;
    public long Offset { get; } = offset;
}

/// <summary>Another process holds the store's lock file.</summary>
public sealed class MonitorStoreLockedException(string directory, string holder, Exception? inner)
    : MonitorStoreException($"monitor store {directory} is in use by another process ({holder}); stop that monitor first", inner)
{
    public string Directory { get; } = directory;
}

/// <summary>
/// A write or flush of the log failed. After a failed fsync the kernel may have dropped the dirty pages, so what is on
/// disk is unknown: the store refuses every later call, and the monitor must reopen it (replay tells what survived).
/// </summary>
public sealed class MonitorStoreFailedException(string directory, Exception inner)
    : MonitorStoreException($"monitor store {directory} failed a write and must be reopened: {inner.Message}", inner);
