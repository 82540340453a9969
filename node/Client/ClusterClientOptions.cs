using Appliance.Wire.Messenger;
using Microsoft.Extensions.Logging;

namespace Appliance.Client;

/// <summary>Settings of a <see cref="ClusterClient"/>.</summary>
public sealed record ClusterClientOptions
{
    /// <summary>How long a request may take in all, resends included, unless the call says otherwise.</summary>
    public TimeSpan OpTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long <see cref="ClusterClient.ConnectAsync"/> waits for the first osdmap.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Bytes of requests in flight (data sent plus data asked for); requests beyond wait.</summary>
    public long MaxInFlightBytes { get; init; } = 100L << 20;

    /// <summary>Requests in flight; requests beyond wait.</summary>
    public int MaxInFlightOps { get; init; } = 1024;

    /// <summary>The first pause before resending to an OSD that said "try again" under a map the client already has;
    /// doubles per resend up to <see cref="MaxRetryBackoff"/>.</summary>
    public TimeSpan RetryBackoff { get; init; } = TimeSpan.FromMilliseconds(10);

    public TimeSpan MaxRetryBackoff { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>How often watches are checked for a reconnected session to re-register on (map changes are acted on
    /// at once).</summary>
    public TimeSpan WatchCheckInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Crc or Secure (AES-GCM) connections to OSDs.</summary>
    public ConnectionMode Mode { get; init; } = ConnectionMode.Crc;

    public MessengerOptions Messenger { get; init; } = new();

    public ILoggerFactory? LoggerFactory { get; init; }
}
