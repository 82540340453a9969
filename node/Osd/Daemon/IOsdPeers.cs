namespace Appliance.Osd.Daemon;

/// <summary>The OSD reached a peer that is gone, or the peer did not answer in time.</summary>
public sealed class PeerUnavailableException(int osd, string message) : IOException(message)
{
    public int Osd { get; } = osd;
}

/// <summary>
/// How an OSD talks to the other OSDs: the network seam of the OSD's logic. The real one is the messenger over the
/// cluster addresses of the osdmap with tickets; tests plug in an in-process one (which may drop or delay). Messages
/// to one peer are delivered in the order <see cref="SendAsync"/> was called, at most once.
/// </summary>
public interface IOsdPeers
{
    /// <summary>Queues a one-way message to OSD <paramref name="osd"/>; returns once it is queued (it may wait for
    /// room in the session's window).</summary>
    ValueTask SendAsync(int osd, ushort type, ReadOnlyMemory<byte> payload, CancellationToken ct);

    /// <summary>Sends a request and waits for its answer.</summary>
    Task<byte[]> RequestAsync(int osd, ushort type, ReadOnlyMemory<byte> payload, TimeSpan timeout, CancellationToken ct);
}
