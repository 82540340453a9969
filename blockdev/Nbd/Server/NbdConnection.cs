using Appliance.Platform.Concurrency;
using System.IO.Pipelines;
using System.Net.Sockets;

namespace Appliance.BlockDev.Nbd.Server;

/// <summary>
/// One client connection: negotiation (NbdConnection.Handshake.cs), then transmission (NbdConnection.Transmission.cs).
/// The reader is a single loop on the connection's thread; replies are queued by whichever handler finishes and
/// sent in batches by one sender at a time, so replies go out in completion order (the protocol allows any order).
/// </summary>
internal sealed partial class NbdConnection
{
    private static readonly StreamPipeReaderOptions ReaderOptions = new(bufferSize: 256 << 10, minimumReadSize: 64 << 10, leaveOpen: true);

    private readonly NbdServer _server;
    private readonly Socket _socket;
    private readonly NbdServerOptions _options;
    private readonly string _where;
    private readonly CancellationTokenSource _cts;
    private Stream _stream;
    private PipeReader _reader;
    // Environment.TickCount64 when the current reply write started, 0 when none is under way (read by the watchdog).
    private long _writeStarted;
    private int _aborted;

    public NbdConnection(NbdServer server, Socket socket, NbdServerOptions options, string where, CancellationToken serverStop)
    {
        _server = server;
        _socket = socket;
        _options = options;
        _where = where;
        if (socket.AddressFamily != AddressFamily.Unix)
        {
            socket.NoDelay = true;
        }
        Peer = socket.RemoteEndPoint?.ToString() is { Length: > 0 } p ? p : "unix client";
        _cts = CancellationTokenSource.CreateLinkedTokenSource(serverStop);
        // Blocking sends give up after twice the stall limit even if the watchdog did not get to it first.
        socket.SendTimeout = (int)Math.Min(int.MaxValue, options.ReplyStallTimeout.TotalMilliseconds * 2);
        _stream = new BlockingNetworkStream(socket);
        _reader = PipeReader.Create(_stream, ReaderOptions);
        _budget = new ByteBudget(options.MaxBytesInFlight);
        _slots = new SemaphoreSlim(options.MaxRequestsInFlight, options.MaxRequestsInFlight);
    }

    public string Peer { get; }

    /// <summary>Serves the connection on the calling thread (a dedicated one) until it ends. Never throws.</summary>
    public void Run()
    {
        try
        {
            ExportLease? lease;
            // Every read of the negotiation is bounded by the socket timeout, the whole negotiation by this timer.
            _socket.ReceiveTimeout = (int)Math.Min(int.MaxValue, _options.HandshakeTimeout.TotalMilliseconds);
            using (var deadline = new CancellationTokenSource(_options.HandshakeTimeout))
            using (deadline.Token.Register(() => Abort($"negotiation not finished within {_options.HandshakeTimeout.TotalSeconds:0} s")))
            {
                lease = NegotiateAsync().GetAwaiter().GetResult();
            }
            if (lease is not null)
            {
                _socket.ReceiveTimeout = 0;
                try
                {
                    ServeTransmission(lease);
                }
                finally
                {
                    lease.DisposeAsync().AsTask().GetAwaiter().GetResult();
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException
            or System.Security.Authentication.AuthenticationException)
        {
            // The client went away, the server is stopping, or a timeout fired: nothing more to tell this client.
            if (e is System.Security.Authentication.AuthenticationException)
            {
                Log($"TLS handshake failed: {e.Message}");
            }
        }
        catch (ProtocolViolationException e)
        {
            Log($"closing: {e.Message}");
        }
        catch (Exception e)
        {
            Log($"internal error: {e}");
        }
        finally
        {
            CloseAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>Closes the connection now (watchdog, server stop, a handler's bug).</summary>
    public void Abort(string reason)
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0)
        {
            return;
        }
        if (reason.Length > 0)
        {
            Log($"closing: {reason}");
        }
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
        // Pending sends and receives fail at once; the loops then unwind through their normal paths.
        _socket.Dispose();
    }

    public void CheckStall(TimeSpan limit)
    {
        var started = Volatile.Read(ref _writeStarted);
        if (started != 0 && Environment.TickCount64 - started > limit.TotalMilliseconds)
        {
            Abort($"the client has not read its replies for {limit.TotalSeconds:0} s");
        }
    }

    private async ValueTask CloseAsync()
    {
        Abort("");
        Drain(TimeSpan.FromSeconds(30));
        await _reader.CompleteAsync();
        await _stream.DisposeAsync();
        _socket.Dispose();
        _cts.Dispose();
    }

    private void Log(string message) => _options.Log($"nbd: {Peer} on {_where}: {message}");
}

/// <summary>The client broke a MUST of the protocol; the connection is dropped (a hard disconnect).</summary>
internal sealed class ProtocolViolationException(string message) : Exception(message);
