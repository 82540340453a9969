using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Appliance.Maps;
using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Heartbeat;

/// <summary>
/// Heartbeats over UDP, on a path that never waits behind op work (Ceph keeps a separate heartbeat messenger for the
/// same reason): one datagram socket bound to the OSD's own address and port (the UDP port of the TCP one the
/// osdmap names, so peers need no extra address), and two dedicated threads, neither on the thread pool: one ticks
/// the <see cref="Heartbeater"/> every interval (it pings), one receives and answers in place. Datagrams are fixed
/// size (<see cref="HeartbeatCodec"/>) and written into buffers allocated once; nothing here touches a PG, the
/// store or the messenger. A lost datagram only costs one interval of the grace.
/// </summary>
public sealed class UdpHeartbeats : IHeartbeatNetwork, IDisposable
{
    private readonly Socket _socket;
    private readonly Func<uint?> _currentKeyId;
    private readonly Func<uint, ReadOnlyMemory<byte>?> _secretById;
    private readonly Action<uint> _unknownKey;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<uint, byte[]> _keys = new();
    private readonly CancellationTokenSource _stop = new();
    // The ping buffer belongs to the tick thread (the only caller of Send), the reply buffer to the receive thread.
    private readonly byte[] _pingBuffer = new byte[HeartbeatCodec.Size];
    private readonly byte[] _replyBuffer = new byte[HeartbeatCodec.Size];
    private volatile Dictionary<int, SocketAddress> _addresses = [];
    private Thread? _ticker;
    private Thread? _receiver;
    private long _dropped;
    private int _disposed;

    /// <param name="socket">A bound datagram socket (<see cref="Bind"/>).</param>
    /// <param name="currentKeyId">The id of the newest `osd` service secret, or null before the OSD has one.</param>
    /// <param name="secretById">The secret of a key id, if this OSD holds it.</param>
    /// <param name="unknownKey">Called when a datagram names a key id this OSD does not hold (fetch the keys again).</param>
    /// <param name="log">Where send and receive errors go.</param>
    public UdpHeartbeats(Socket socket, Func<uint?> currentKeyId, Func<uint, ReadOnlyMemory<byte>?> secretById,
        Action<uint> unknownKey, ILogger log)
    {
        _socket = socket;
        _currentKeyId = currentKeyId;
        _secretById = secretById;
        _unknownKey = unknownKey;
        _log = log;
    }

    public Heartbeater? Heartbeater { get; set; }

    public EndPoint LocalEndPoint => _socket.LocalEndPoint!;

    /// <summary>Datagrams dropped: not heartbeats, unknown keys, bad MACs.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>A datagram socket at <paramref name="endpoint"/>.</summary>
    public static Socket Bind(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.Bind(endpoint);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return socket;
    }

    /// <summary>Peers' heartbeat addresses: the UDP port of each up OSD's address in the map.</summary>
    public void OnMap(OsdMap map) =>
        SetAddresses(map.Osds.Values
            .Where(o => o.Up)
            .Select(o => (o.Id, Ok: IPEndPoint.TryParse(o.Address, out var ep), ep))
            .Where(x => x.Ok)
            .ToDictionary(x => x.Id, x => x.ep!));

    /// <summary>Where each OSD's heartbeats go (replaces the whole set).</summary>
    public void SetAddresses(IReadOnlyDictionary<int, IPEndPoint> addresses) =>
        _addresses = addresses.ToDictionary(kv => kv.Key, kv => kv.Value.Serialize());

    public void Start()
    {
        _ticker = new Thread(TickLoop) { IsBackground = true, Name = "heartbeat tick" };
        _receiver = new Thread(ReceiveLoop) { IsBackground = true, Name = "heartbeat receive" };
        _ticker.Start();
        _receiver.Start();
    }

    private byte[]? KeyOf(uint id)
    {
        if (_keys.TryGetValue(id, out var key))
        {
            return key;
        }
        if (_secretById(id) is not { } secret)
        {
            return null;
        }
        return _keys[id] = HeartbeatCodec.DeriveKey(secret.Span);
    }

    public void Send(int osd, in HeartbeatPacket packet)
    {
        if (!_addresses.TryGetValue(osd, out var to) || _currentKeyId() is not { } keyId || KeyOf(keyId) is not { } key)
        {
            return;
        }
        HeartbeatCodec.Write(_pingBuffer, packet, keyId, key);
        SendTo(_pingBuffer, to);
    }

    private void SendTo(byte[] datagram, SocketAddress to)
    {
        try
        {
            _socket.SendTo(datagram, SocketFlags.None, to);
        }
        catch (SocketException e)
        {
            // Best effort: a full send buffer or an ICMP error from an earlier datagram; the next interval tries again.
            _log.LogDebug("heartbeat send: {Error}", e.SocketErrorCode);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private void TickLoop()
    {
        var stop = _stop.Token.WaitHandle;
        while (!_stop.IsCancellationRequested)
        {
            var hb = Heartbeater;
            try
            {
                hb?.Tick();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A bug, not a fault to ride out silently: logged loudly, and the next tick tries again.
                _log.LogError(e, "heartbeat tick failed");
            }
            stop.WaitOne(hb?.Interval ?? TimeSpan.FromMilliseconds(500));
        }
    }

    private void ReceiveLoop()
    {
        var buffer = new byte[512];
        var from = new SocketAddress(_socket.AddressFamily);
        while (!_stop.IsCancellationRequested)
        {
            int n;
            try
            {
                n = _socket.ReceiveFrom(buffer, SocketFlags.None, from);
            }
            catch (SocketException e)
            {
                // ICMP port unreachable from a peer that went away (reported on the next receive): not ours to judge.
                // Anything else is paced, so a persistent error cannot spin this thread.
                if (e.SocketErrorCode is not (SocketError.ConnectionReset or SocketError.ConnectionRefused))
                {
                    _log.LogWarning("heartbeat receive: {Error}", e.SocketErrorCode);
                    Thread.Sleep(50);
                }
                continue;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            var datagram = buffer.AsSpan(0, n);
            if (HeartbeatCodec.KeyIdOf(datagram) is not { } keyId)
            {
                Interlocked.Increment(ref _dropped);
                continue;
            }
            if (KeyOf(keyId) is not { } key)
            {
                Interlocked.Increment(ref _dropped);
                _unknownKey(keyId);
                continue;
            }
            if (!HeartbeatCodec.TryRead(datagram, key, out var packet))
            {
                Interlocked.Increment(ref _dropped);
                continue;
            }
            if (Heartbeater?.Receive(packet) is { } reply && _currentKeyId() is { } replyKeyId && KeyOf(replyKeyId) is { } replyKey)
            {
                HeartbeatCodec.Write(_replyBuffer, reply, replyKeyId, replyKey);
                SendTo(_replyBuffer, from);
            }
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stop.Cancel();
        _socket.Dispose();
        _ticker?.Join(TimeSpan.FromSeconds(2));
        _receiver?.Join(TimeSpan.FromSeconds(2));
        _stop.Dispose();
    }
}
