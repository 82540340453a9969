using System.Collections.Concurrent;
using System.Net;
using Appliance.Maps;
using Appliance.Wire.Auth;
using Appliance.Wire.Messenger;
using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Daemon;

/// <summary>
/// The OSD's peers over the messenger: one session per other OSD, to its address in the osdmap, authenticated with a
/// ticket for the `osd` service (the other OSD verifies it with the rotating keys, as it does for clients). Messages
/// that come back on a session (answers to replicated changes) go to <see cref="Received"/>. A session is dropped when
/// its OSD is marked down or moves; <see cref="Unreachable"/> lists peers whose connection attempts keep failing, so
/// the daemon can report them to the monitors at once.
/// </summary>
public sealed class MessengerPeers(int self, Func<CancellationToken, ValueTask<IssuedTicket>> tickets, MessengerOptions options, ILogger logger) : IOsdPeers, IAsyncDisposable
{
    private readonly ConcurrentDictionary<int, Peer> _clients = new();

    private sealed record Peer(string Address, MessengerClient Client, Task Started, DateTime Since);
    private volatile OsdMap? _map;

    /// <summary>A message that came back on a session to OSD (from): (from, type, payload).</summary>
    public Func<int, ushort, ReadOnlyMemory<byte>, ValueTask>? Received { get; set; }

    public void OnMap(OsdMap map)
    {
        _map = map;
        foreach (var (osd, peer) in _clients)
        {
            if (map.FindOsd(osd) is not { Up: true } info || info.Address != peer.Address)
            {
                if (_clients.TryRemove(osd, out var gone))
                {
                    _ = gone.Client.DisposeAsync().AsTask();
                }
            }
        }
    }

    /// <summary>Peers up in the map whose last connection attempts failed (refused or reset).</summary>
    public IEnumerable<int> Unreachable() =>
        _clients.Where(kv => kv.Value.Client.FailedConnectsInARow > 0).Select(kv => kv.Key);

    private async ValueTask<MessengerClient> ClientAsync(int osd)
    {
        if (_clients.TryGetValue(osd, out var existing))
        {
            if (!existing.Started.IsFaulted)
            {
                return existing.Client;
            }
            // Its authentication was refused (final for a MessengerClient): the peer may not have had the key our
            // ticket was sealed under yet (it fetches it when it sees the ticket). Replaced after a short pause.
            if (DateTime.UtcNow - existing.Since < TimeSpan.FromMilliseconds(200))
            {
                throw new PeerUnavailableException(osd, $"osd.{osd} refused our ticket: {existing.Started.Exception?.InnerException?.Message}");
            }
            if (_clients.TryRemove(new KeyValuePair<int, Peer>(osd, existing)))
            {
                _ = existing.Client.DisposeAsync().AsTask();
            }
            return await ClientAsync(osd);
        }
        var info = _map?.FindOsd(osd);
        if (info is not { Up: true } || !IPEndPoint.TryParse(info.Address, out var endpoint))
        {
            throw new PeerUnavailableException(osd, $"osd.{osd} is not up in the osdmap");
        }
        var client = new MessengerClient(endpoint, $"osd.{self}", tickets, ConnectionMode.Crc, options,
            (_, m) => Received?.Invoke(osd, m.Type, m.Payload) ?? ValueTask.CompletedTask,
            line => logger.LogDebug("peer osd.{Osd}: {Line}", osd, line));
        var started = client.StartAsync();
        if (!_clients.TryAdd(osd, new Peer(info.Address, client, started, DateTime.UtcNow)))
        {
            await client.DisposeAsync();
            return _clients[osd].Client;
        }
        // Observed here so a refusal is not an unobserved exception; ClientAsync looks at it.
        _ = started.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
        return client;
    }

    public async ValueTask SendAsync(int osd, ushort type, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        var client = await ClientAsync(osd);
        await client.Session.SendWithoutCopyAsync(type, payload, 0, ct);
    }

    public async Task<byte[]> RequestAsync(int osd, ushort type, ReadOnlyMemory<byte> payload, TimeSpan timeout, CancellationToken ct)
    {
        var client = await ClientAsync(osd);
        try
        {
            var reply = await client.Session.RequestAsync(type, payload, timeout, ct);
            return reply.Payload.ToArray();
        }
        catch (TimeoutException)
        {
            // No answer in time: the session may be dead for good (a refused re-authentication ends a messenger
            // client) or stuck; the next request gets a fresh one rather than waiting on this one forever.
            if (_clients.TryGetValue(osd, out var peer) && peer.Client == client && _clients.TryRemove(new KeyValuePair<int, Peer>(osd, peer)))
            {
                _ = client.DisposeAsync().AsTask();
            }
            throw new PeerUnavailableException(osd, $"osd.{osd} did not answer within {timeout.TotalSeconds:0} s");
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var osd in _clients.Keys.ToList())
        {
            if (_clients.TryRemove(osd, out var c))
            {
                await c.Client.DisposeAsync();
            }
        }
    }
}
