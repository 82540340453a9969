using System.Net;
using System.Net.Sockets;

namespace Appliance.Wire.Tests.Messenger;

/// <summary>A loopback TCP proxy that can flip one bit in the client-to-server stream: a man in the middle.</summary>
internal sealed class TamperingProxy : IAsyncDisposable
{
    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private volatile bool _flipNext;

    public TamperingProxy(IPEndPoint target)
    {
        _target = target;
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
        Endpoint = (IPEndPoint)_listener.LocalEndPoint!;
        _loop = AcceptAsync();
    }

    public IPEndPoint Endpoint { get; }

    public bool Flipped { get; private set; }

    public void FlipNextClientByte() => _flipNext = true;

    private async Task AcceptAsync()
    {
        var pumps = new List<Task>();
        try
        {
            while (true)
            {
                var client = await _listener.AcceptAsync(_stop.Token);
                var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await server.ConnectAsync(_target, _stop.Token);
                pumps.Add(PumpAsync(client, server, tamper: true));
                pumps.Add(PumpAsync(server, client, tamper: false));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        await Task.WhenAll(pumps);
    }

    private async Task PumpAsync(Socket from, Socket to, bool tamper)
    {
        var buffer = new byte[65536];
        try
        {
            while (true)
            {
                var n = await from.ReceiveAsync(buffer, _stop.Token);
                if (n == 0)
                {
                    break;
                }
                if (tamper && _flipNext)
                {
                    _flipNext = false;
                    buffer[n / 2] ^= 0x10;
                    Flipped = true;
                }
                await to.SendAsync(buffer.AsMemory(0, n), _stop.Token);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            from.Dispose();
            to.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _loop;
    }
}
