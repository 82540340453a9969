namespace Appliance.Wire.Messenger;

/// <summary>
/// How a daemon process runs its socket continuations. By default the runtime's socket event thread (epoll) hands
/// every completed receive or send to the thread pool, and a pool thread runs what awaited it: two wake-ups and a
/// thread switch for each. A process whose socket continuations never block may run them on the event threads
/// directly (the runtime then keeps one event thread per core). That is what the messenger's rule asks of every
/// message handler (README, "Gotchas": a handler must not block its thread, it may be the read loop's), and the
/// messenger's own loops only parse, checksum, seal or open, and wait asynchronously. Measured (`bench wire`, 1 MiB,
/// same run): crc 0.76 → 0.91 and secure 0.52 → 0.65 of plain TCP; a monitor's one-proposer commit p50 1.15 →
/// 0.95 ms.
/// A process that also runs code which blocks in a socket continuation (synchronous disk I/O, a lock held across
/// I/O) must not use it: a blocked event thread stalls every socket it serves.
/// </summary>
public static class SocketCompletions
{
    /// <summary>The runtime's switch; it is read once, when the process's first socket registers with the event
    /// threads.</summary>
    public const string InlineVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>
    /// Runs this process's socket continuations on the event threads. Call it before the process opens its first
    /// socket (later it has no effect). An operator's explicit setting of <see cref="InlineVariable"/> is left as it
    /// is (0 turns this off). Returns whether continuations will run inline.
    /// </summary>
    public static bool RunInline()
    {
        if (Environment.GetEnvironmentVariable(InlineVariable) is null)
        {
            Environment.SetEnvironmentVariable(InlineVariable, "1");
        }
        // As the runtime reads it: "1" or "true".
        return Environment.GetEnvironmentVariable(InlineVariable) is { } v && (v == "1" || v.Equals("true", StringComparison.OrdinalIgnoreCase));
    }
}
