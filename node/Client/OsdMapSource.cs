using Appliance.Maps;
using Appliance.Maps.Client;

namespace Appliance.Client;

/// <summary>
/// Where the client's osdmaps come from: the monitors (<see cref="MonOsdMapSource"/>), or a test's own maps. The
/// client resubscribes with the newest map it holds whenever the stream ends or throws.
/// </summary>
public interface IOsdMapSource
{
    /// <summary>The maps after <paramref name="have"/> (or the current one when null), each as it is committed.</summary>
    IAsyncEnumerable<OsdMap> WatchOsdMapAsync(OsdMap? have, CancellationToken ct);
}

/// <summary>osdmaps by subscription to the monitors (<see cref="MonClient.WatchOsdMapAsync"/>).</summary>
public sealed class MonOsdMapSource(MonClient monitors) : IOsdMapSource
{
    public IAsyncEnumerable<OsdMap> WatchOsdMapAsync(OsdMap? have, CancellationToken ct) => monitors.WatchOsdMapAsync(have, ct);
}
