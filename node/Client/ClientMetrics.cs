using System.Diagnostics.Metrics;

namespace Appliance.Client;

/// <summary>What the client counts, under the meter <c>Appliance.Client</c> (one exporter serves every meter).</summary>
internal static class ClientMetrics
{
    public static readonly Meter Meter = new("Appliance.Client");

    /// <summary>Requests completed (any outcome), tagged <c>kind</c> = read or write.</summary>
    public static readonly Counter<long> Ops = Meter.CreateCounter<long>("appliance.client.ops", "{op}");
    public static readonly Counter<long> BytesSent = Meter.CreateCounter<long>("appliance.client.bytes_sent", "By");
    public static readonly Counter<long> BytesReceived = Meter.CreateCounter<long>("appliance.client.bytes_received", "By");
    /// <summary>Resends, tagged <c>reason</c>: try_again, map_change, connection, auth.</summary>
    public static readonly Counter<long> Retries = Meter.CreateCounter<long>("appliance.client.retries", "{resend}");
    /// <summary>Failed requests, tagged <c>kind</c> (<see cref="OsdErrors.Kind"/>).</summary>
    public static readonly Counter<long> Errors = Meter.CreateCounter<long>("appliance.client.errors", "{op}");
    public static readonly Histogram<double> Latency = Meter.CreateHistogram<double>("appliance.client.op.duration", "ms");
    public static readonly Counter<long> MapEpochs = Meter.CreateCounter<long>("appliance.client.osdmaps", "{map}");
}
