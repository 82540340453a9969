namespace Appliance.Platform.Devices;

/// <summary>
/// A disk in memory, sparse (1 MiB chunks allocated on first write; unwritten ranges read as zeros), for unit
/// tests and simulations. It enforces the same alignment contract as <see cref="FileDevice"/>. Every completed
/// write is immediately "durable": wrap it in <see cref="FaultInjectingDevice"/> to simulate power cuts.
/// </summary>
public sealed class MemoryDevice : IBlockDevice
{
    private const int ChunkShift = 20;
    private const int ChunkSize = 1 << ChunkShift;
    private readonly Dictionary<long, byte[]> _chunks = [];
    private readonly Lock _lock = new();

    public MemoryDevice(long size, int blockSize = 512, string name = "memory")
    {
        if (blockSize is not (512 or 4096))
        {
            throw new ArgumentException("block size must be 512 or 4096", nameof(blockSize));
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(size, blockSize);
        Size = size - size % blockSize;
        BlockSize = blockSize;
        Name = name;
    }

    public string Name { get; }
    public long Size { get; }
    public int BlockSize { get; }
    public int MemoryAlignment => BlockSize;
    public bool IsReadOnly => false;

    /// <summary>Bytes of memory held by written chunks.</summary>
    public long AllocatedBytes
    {
        get
        {
            lock (_lock)
            {
                return (long)_chunks.Count * ChunkSize;
            }
        }
    }

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        DeviceChecks.Io(this, offset, destination.Length, destination, write: false);
        lock (_lock)
        {
            Copy(offset, destination.Span, null);
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        DeviceChecks.Io(this, offset, source.Length, source, write: true);
        lock (_lock)
        {
            Copy(offset, default, source.Span);
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken ct = default) => ValueTask.CompletedTask;

    public ValueTask DiscardAsync(long offset, long length, CancellationToken ct = default)
    {
        DeviceChecks.Range(this, offset, length);
        lock (_lock)
        {
            // Discarded ranges read back as zeros here; whole chunks are released.
            for (var pos = offset; pos < offset + length;)
            {
                var chunk = pos >> ChunkShift;
                var within = (int)(pos & (ChunkSize - 1));
                var n = (int)Math.Min(ChunkSize - within, offset + length - pos);
                if (_chunks.TryGetValue(chunk, out var data))
                {
                    if (n == ChunkSize)
                    {
                        _chunks.Remove(chunk);
                    }
                    else
                    {
                        data.AsSpan(within, n).Clear();
                    }
                }
                pos += n;
            }
        }
        return ValueTask.CompletedTask;
    }

    /// <summary>Copies between the device and a span: into <paramref name="read"/> when <paramref name="write"/>
    /// is empty, else from <paramref name="write"/>.</summary>
    private void Copy(long offset, Span<byte> read, ReadOnlySpan<byte> write)
    {
        var length = write.IsEmpty ? read.Length : write.Length;
        var done = 0;
        while (done < length)
        {
            var pos = offset + done;
            var chunk = pos >> ChunkShift;
            var within = (int)(pos & (ChunkSize - 1));
            var n = Math.Min(ChunkSize - within, length - done);
            if (write.IsEmpty)
            {
                if (_chunks.TryGetValue(chunk, out var data))
                {
                    data.AsSpan(within, n).CopyTo(read.Slice(done, n));
                }
                else
                {
                    read.Slice(done, n).Clear();
                }
            }
            else
            {
                if (!_chunks.TryGetValue(chunk, out var data))
                {
                    data = new byte[ChunkSize];
                    _chunks[chunk] = data;
                }
                write.Slice(done, n).CopyTo(data.AsSpan(within, n));
            }
            done += n;
        }
    }

    public ValueTask DisposeAsync()
    {
        lock (_lock)
        {
            _chunks.Clear();
        }
        return ValueTask.CompletedTask;
    }
}
