using System.Net.Sockets;

namespace Appliance.BlockDev.Nbd.Server;

/// <summary>
/// A NetworkStream whose async methods do the blocking call and return completed tasks. A connection runs on a
/// thread of its own (like nbdkit's); using this stream for the handshake keeps the socket in blocking mode (the
/// first real async socket call would switch it to non-blocking for good), so the transmission receive loop's
/// reads are plain blocking recv calls the kernel wakes directly, with no epoll-thread hop.
/// </summary>
internal sealed class BlockingNetworkStream(Socket socket) : NetworkStream(socket, ownsSocket: false)
{
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(Read(buffer.Span));
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(Read(buffer, offset, count));
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Write(buffer, offset, count);
        return Task.CompletedTask;
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
