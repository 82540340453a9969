using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Appliance.Platform.Native;

namespace Appliance.BlockDev.Nbd.Server;

/// <summary>
/// An NBD server: TCP and unix-socket listeners, each accepted connection negotiated (fixed newstyle) and then
/// served until the client disconnects. Every export of <see cref="NbdServerOptions.Catalog"/> is offered on every
/// listener.
/// </summary>
public sealed class NbdServer : IAsyncDisposable
{
    private readonly NbdServerOptions _options;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<(Socket Socket, Task Loop, string? UnixPath)> _listeners = [];
    private readonly ConcurrentDictionary<NbdConnection, Task> _connections = new();
    private readonly Task _watchdog;
    private long _highWaterBytes;

    public NbdServer(NbdServerOptions options)
    {
        options.Validate();
        _options = options;
        Exports = new ExportTable(options.Catalog, options.ReadOnly);
        _watchdog = WatchdogAsync();
    }

    internal ExportTable Exports { get; }

    /// <summary>Connections being served now.</summary>
    public int ActiveConnections => _connections.Count;

    /// <summary>Connections accepted since start.</summary>
    public long AcceptedConnections => Interlocked.Read(ref _accepted);

    private long _accepted;

    /// <summary>The most payload bytes any one connection held in flight (bounded by MaxBytesInFlight).</summary>
    public long HighWaterBytesInFlight => Interlocked.Read(ref _highWaterBytes);

    /// <summary>The most replies any one connection held queued or being sent (bounded by MaxRequestsInFlight).</summary>
    public long HighWaterRepliesHeld => Interlocked.Read(ref _highWaterReplies);

    private long _highWaterReplies;

    /// <summary>Exports open now (an image stays open while any connection uses it).</summary>
    public int OpenExports => Exports.OpenCount;

    /// <summary>Listens on a TCP address (port 0 picks a free port); returns the bound endpoint.</summary>
    public IPEndPoint ListenTcp(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (endpoint.AddressFamily == AddressFamily.InterNetworkV6 && endpoint.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }
            Appliance.Platform.Native.Listeners.AllowRebind(socket);
            socket.Bind(endpoint);
            socket.Listen(512);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        var bound = (IPEndPoint)socket.LocalEndPoint!;
        _listeners.Add((socket, AcceptLoopAsync(socket, bound.ToString()), null));
        return bound;
    }

    /// <summary>Listens on a unix socket path (a stale socket file there is replaced; any other file is refused).</summary>
    public void ListenUnix(string path)
    {
        if (File.Exists(path) || Directory.Exists(path))
        {
            // 0xC000 is S_IFSOCK: only a leftover socket (from a server that died) may be replaced.
            if ((Posix.statx(path).stx_mode & Constants.S_IFMT) != 0xC000)
            {
                throw new IOException($"{path} exists and is not a socket; choose another --unix path");
            }
            File.Delete(path);
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(512);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        _listeners.Add((socket, AcceptLoopAsync(socket, "unix:" + path), path));
    }

    /// <summary>Stops accepting, closes every connection (in-flight requests finish first, within a bound) and the exports.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }
        await _stop.CancelAsync();
        foreach (var (socket, _, _) in _listeners)
        {
            socket.Dispose();
        }
        foreach (var (_, loop, path) in _listeners)
        {
            await loop;
            if (path is not null)
            {
                File.Delete(path);
            }
        }
        foreach (var c in _connections.Keys)
        {
            c.Abort("server stopping");
        }
        await Task.WhenAll(_connections.Values).WaitAsync(TimeSpan.FromSeconds(30));
        await _watchdog;
        _stop.Dispose();
    }

    internal void NoteBytesInFlight(long bytes)
    {
        long seen;
        while (bytes > (seen = Interlocked.Read(ref _highWaterBytes)) && Interlocked.CompareExchange(ref _highWaterBytes, bytes, seen) != seen)
        {
        }
    }

    internal void NoteRepliesHeld(long replies)
    {
        long seen;
        while (replies > (seen = Interlocked.Read(ref _highWaterReplies)) && Interlocked.CompareExchange(ref _highWaterReplies, replies, seen) != seen)
        {
        }
    }

    private async Task AcceptLoopAsync(Socket listener, string where)
    {
        await Task.Yield();
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || _stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                // EMFILE and friends: say so, back off a little, keep serving the clients we have.
                _options.Log($"nbd: accept on {where} failed: {e.Message}");
                await Task.Delay(100);
                continue;
            }
            Interlocked.Increment(ref _accepted);
            if (_connections.Count >= _options.MaxConnections)
            {
                _options.Log($"nbd: refusing a connection on {where}: {_options.MaxConnections} connections already");
                client.Dispose();
                continue;
            }
            var connection = new NbdConnection(this, client, _options, where, _stop.Token);
            StartConnection(connection);
        }
    }

    /// <summary>Runs a connection on a thread of its own, registered (with the task that ends with it) before it starts.</summary>
    private void StartConnection(NbdConnection connection)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _connections[connection] = done.Task;
        var thread = new Thread(() =>
        {
            try
            {
                connection.Run();
            }
            finally
            {
                _connections.TryRemove(connection, out _);
                done.SetResult();
            }
        })
        {
            IsBackground = true,
            Name = $"nbd {connection.Peer}",
        };
        thread.Start();
    }

    /// <summary>Once a second: close connections whose client stopped reading replies (a reply stalled too long).</summary>
    private async Task WatchdogAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                foreach (var c in _connections.Keys)
                {
                    c.CheckStall(_options.ReplyStallTimeout);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
