using Appliance.Platform.Native;
using Microsoft.Win32.SafeHandles;

namespace Appliance.BlockDev.Images;

/// <summary>
/// A local image: a sparse file whose length is the image size. Data I/O goes through <see cref="RandomAccess"/>
/// (pread/pwrite at any offset and length); allocation comes from lseek(SEEK_DATA/SEEK_HOLE); TRIM punches holes;
/// zeroing punches or zero-ranges with fallocate; flush is fdatasync.
/// </summary>
/// <remarks>
/// All connections serving one image share one instance (see the server's export table), and even separate
/// processes share the kernel's page cache for the inode: fdatasync on any descriptor writes back every dirty page
/// of the file, so a flush covers writes completed through any connection (CAN_MULTI_CONN holds).
/// Calls complete synchronously (page cache); the NBD connection runs slow ones (flush, FUA) off its reader.
/// </remarks>
public sealed class LocalImage : IImage
{
    private static readonly byte[] Zeroes = new byte[1 << 20];
    private readonly SafeFileHandle _handle;
    private readonly string _path;
    // Learned on first use: does this filesystem support punching holes / zero ranges? (ext4, xfs, tmpfs: punch yes.)
    private volatile bool _punchUnsupported;
    private volatile bool _zeroRangeUnsupported;

    private LocalImage(string name, string path, SafeFileHandle handle, long size, bool readOnly)
    {
        Name = name;
        _path = path;
        _handle = handle;
        Size = size;
        IsReadOnly = readOnly;
    }

    public string Name { get; }

    public long Size { get; }

    public bool IsReadOnly { get; }

    public bool FlushCoversAllWriters => true;

    /// <summary>Opens the file of an image. It takes a shared flock so `image rm` / `image resize` can see it is in use.</summary>
    public static LocalImage Open(string name, string path, bool readOnly)
    {
        var handle = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite,
            FileShare.ReadWrite | FileShare.Delete);
        try
        {
            WithFd(handle, fd => Posix.flock(fd, Constants.LOCK_SH | Constants.LOCK_NB, path));
            return new LocalImage(name, path, handle, RandomAccess.GetLength(handle), readOnly);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct)
    {
        var span = destination.Span;
        var done = 0;
        while (done < span.Length)
        {
            var n = RandomAccess.Read(_handle, span[done..], offset + done);
            if (n == 0)
            {
                // The file was shortened behind our back: what is past its end reads as zeroes, like a hole.
                span[done..].Clear();
                break;
            }
            done += n;
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, bool fua, CancellationToken ct)
    {
        CheckWritable();
        RandomAccess.Write(_handle, source.Span, offset);
        if (fua)
        {
            Sync();
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken ct)
    {
        if (!IsReadOnly)
        {
            Sync();
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken ct)
    {
        CheckWritable();
        // TRIM is a hint: where the filesystem cannot punch holes, keeping the data is a correct answer.
        if (length > 0 && TryFallocate(Constants.FALLOC_FL_PUNCH_HOLE | Constants.FALLOC_FL_KEEP_SIZE, offset, length) && fua)
        {
            Sync();
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask<bool> ZeroAsync(long offset, long length, ZeroOptions options, bool fua, CancellationToken ct)
    {
        CheckWritable();
        if (length == 0)
        {
            return ValueTask.FromResult(true);
        }
        var noHole = (options & ZeroOptions.NoHole) != 0;
        // Punching a hole deallocates and reads back as zeroes; ZERO_RANGE keeps the blocks allocated (NO_HOLE).
        var done = noHole
            ? TryFallocate(Constants.FALLOC_FL_ZERO_RANGE | Constants.FALLOC_FL_KEEP_SIZE, offset, length)
            : TryFallocate(Constants.FALLOC_FL_PUNCH_HOLE | Constants.FALLOC_FL_KEEP_SIZE, offset, length)
              || TryFallocate(Constants.FALLOC_FL_ZERO_RANGE | Constants.FALLOC_FL_KEEP_SIZE, offset, length);
        if (!done)
        {
            if ((options & ZeroOptions.FastOnly) != 0)
            {
                // Only writing zeroes is left, which is not faster than a write: refuse, having changed nothing.
                return ValueTask.FromResult(false);
            }
            for (var p = offset; p < offset + length; p += Zeroes.Length)
            {
                RandomAccess.Write(_handle, Zeroes.AsSpan(0, (int)Math.Min(Zeroes.Length, offset + length - p)), p);
            }
        }
        if (fua)
        {
            Sync();
        }
        return ValueTask.FromResult(true);
    }

    public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<ImageExtent> destination, CancellationToken ct)
    {
        var extents = destination.Span;
        var end = Math.Min(Size, offset + length);
        var count = 0;
        var success = false;
        _handle.DangerousAddRef(ref success);
        try
        {
            var fd = (int)_handle.DangerousGetHandle();
            var p = offset;
            while (p < end && count < extents.Length)
            {
                // Where is the next data at or after p? None (ENXIO → -1): a hole runs to the end.
                var data = Posix.lseek(fd, p, Constants.SEEK_DATA, _path);
                if (data < 0 || data > p)
                {
                    var holeEnd = data < 0 ? end : Math.Min(data, end);
                    extents[count++] = new ImageExtent(holeEnd - p, ExtentFlags.Hole | ExtentFlags.Zero);
                    p = holeEnd;
                    continue;
                }
                var hole = Posix.lseek(fd, p, Constants.SEEK_HOLE, _path);
                var dataEnd = hole < 0 ? end : Math.Min(hole, end);
                if (dataEnd <= p)
                {
                    // Cannot happen on a sane filesystem (data at p but a hole at p); do not loop forever.
                    dataEnd = end;
                }
                extents[count++] = new ImageExtent(dataEnd - p, ExtentFlags.Data);
                p = dataEnd;
            }
        }
        finally
        {
            if (success)
            {
                _handle.DangerousRelease();
            }
        }
        return ValueTask.FromResult(count);
    }

    public ValueTask CacheAsync(long offset, long length, CancellationToken ct)
    {
        // Prefetch into the page cache by reading, in bounded chunks so a huge request costs no memory.
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            for (var p = offset; p < offset + length && !ct.IsCancellationRequested; p += buffer.Length)
            {
                RandomAccess.Read(_handle, buffer.AsSpan(0, (int)Math.Min(buffer.Length, offset + length - p)), p);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        _handle.Dispose();
        return ValueTask.CompletedTask;
    }

    private void CheckWritable()
    {
        if (IsReadOnly)
        {
            throw new ImageException(ImageErrorKind.ReadOnly, $"image {Name} is read-only");
        }
    }

    private void Sync() => WithFd(_handle, fd => Posix.fdatasync(fd, _path));

    /// <summary>fallocate, or false when this filesystem does not support the mode (remembered).</summary>
    private bool TryFallocate(int mode, long offset, long length)
    {
        var punch = (mode & Constants.FALLOC_FL_PUNCH_HOLE) != 0;
        if (punch ? _punchUnsupported : _zeroRangeUnsupported)
        {
            return false;
        }
        try
        {
            WithFd(_handle, fd => Posix.fallocate(fd, mode, offset, length, _path));
            return true;
        }
        catch (PlatformUnsupportedException)
        {
            if (punch)
            {
                _punchUnsupported = true;
            }
            else
            {
                _zeroRangeUnsupported = true;
            }
            return false;
        }
    }

    private static void WithFd(SafeFileHandle handle, Action<int> action)
    {
        var success = false;
        handle.DangerousAddRef(ref success);
        try
        {
            action((int)handle.DangerousGetHandle());
        }
        finally
        {
            if (success)
            {
                handle.DangerousRelease();
            }
        }
    }
}
