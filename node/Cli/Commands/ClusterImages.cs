using System.CommandLine;
using System.Net;
using Appliance.BlockDev.Images.Cluster;
using Appliance.Client;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;

namespace Appliance.Cli.Commands;

/// <summary>
/// A connection to the cluster for the image and nbd commands: the cluster client (--conf-dir, --id, --keyring,
/// --timeout as every client command) and a monitor client that fences lock holders (`osd blocklist add`), behind a
/// <see cref="ClusterImageStore"/>.
/// </summary>
internal sealed class ClusterImages : IAsyncDisposable
{
    private readonly MonClient _mon;
    private readonly SemaphoreSlim _monOne = new(1, 1);

    private ClusterImages(ClusterClient client, MonClient mon, string owner, TimeSpan lease, bool force)
    {
        Client = client;
        _mon = mon;
        var identity = new LockIdentity(client.Entity, Instance(client), Environment.MachineName, owner);
        Store = new ClusterImageStore(client, new ClusterImageOptions { Identity = identity, Fence = FenceAsync, Lease = lease, Force = force });
    }

    public ClusterClient Client { get; }

    public ClusterImageStore Store { get; }

    public static string Instance(ClusterClient client) => $"{client.Entity}:{client.Nonce}";

    /// <summary>Connects as the command's --id. <paramref name="owner"/> tells this program's locks apart from other
    /// programs' on this host (an NBD server: the address it serves on).</summary>
    public static async Task<ClusterImages> ConnectAsync(ParseResult parse, string owner, TimeSpan lease, bool force, CancellationToken ct)
    {
        var conf = MonitorCommands.LoadConf(parse);
        var entity = parse.GetValue(MonitorCommands.Entity) ?? "client.admin";
        var key = MonitorCommands.LoadKey(parse, entity);
        var timeout = MonitorCommands.TimeoutOf(parse);
        var options = new ClusterClientOptions { ConnectTimeout = timeout, OpTimeout = timeout };
        var client = await ClusterClient.ConnectAsync(conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)), entity, key.Key, options, ct);
        return new ClusterImages(client, MonitorCommands.Client(parse), owner, lease, force);
    }

    private async Task FenceAsync(string instance, CancellationToken ct)
    {
        MonReply reply;
        await _monOne.WaitAsync(ct);
        try
        {
            reply = await _mon.CommandAsync(new OsdBlocklistAdd(instance), ct);
        }
        finally
        {
            _monOne.Release();
        }
        if (reply.Status != MonReplyStatus.Ok)
        {
            throw new ClusterClientException($"the monitors did not blocklist {instance}: {reply.Message.TrimEnd()}");
        }
        // Our map must list it first.
        while (Client.OsdMap is not { } map || !map.IsBlocklisted(instance))
        {
            await Client.WaitForEpochAsync((Client.OsdMap?.Epoch ?? 0) + 1, ct);
        }
        // And every OSD must have that epoch, not only those our next requests go to: an OSD with an older map would
        // still take the old holder's late writes to objects we have not touched yet.
        await Client.EnsureOsdsHaveEpochAsync(Client.OsdMap!.Epoch, ct);
    }

    public async ValueTask DisposeAsync()
    {
        await _mon.DisposeAsync();
        await Client.DisposeAsync();
        _monOne.Dispose();
    }
}
