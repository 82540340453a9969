using System.Buffers;
using System.CommandLine;
using System.Diagnostics;
using Appliance.BlockDev.Images.Cluster;
using Appliance.Cli.Common;
using Appliance.Platform.Checksums;

namespace Appliance.Cli.Commands;

/// <summary>`image import` and `image export`: a file (or a pipe) to and from a cluster image, in object-sized chunks
/// with several in flight; blocks of zeros are skipped (left as holes); the crc32c of what was read is compared with
/// that of what was written, read back, end to end.</summary>
public static partial class ImageCommands
{
    private const int InFlight = 8;
    private const int MaxChunk = 4 << 20;

    private static Command Import()
    {
        var file = new Argument<string>("file") { Description = "The file to import; - for standard input (then --size is needed)." };
        var name = NameArgument();
        var size = SizeOption("The image's size (default: the file's, rounded up to 512 bytes; needed for standard input).", required: false);
        var objectSize = new Option<string?>("--object-size") { Description = "The size of its objects, a power of two from 4K to 16M (default 4M)." };
        var command = new Command("import", "Create a cluster image from a file or standard input: zero blocks stay holes, the data is read back and checked.") { file, name, size, objectSize };
        command.SetAction(async (parse, ct) =>
        {
            var path = parse.GetRequiredValue(file);
            var full = parse.GetRequiredValue(name);
            await using var input = path == "-" ? null : OpenRead(path);
            var source = input ?? BinaryStdio.Input;
            long bytes;
            if (parse.GetValue(size) is { } s)
            {
                bytes = ByteSize.Parse(s, "--size");
            }
            else if (input is not null)
            {
                bytes = (input.Length + 511) / 512 * 512;
                if (bytes == 0)
                {
                    throw new CliException(ExitCodes.InvalidInput, $"{path} is empty; an image needs a size (give --size)");
                }
            }
            else
            {
                throw new CliException(ExitCodes.Usage, "importing standard input needs --size (the image's size)");
            }
            if (input is not null && input.Length > bytes)
            {
                throw new CliException(ExitCodes.Usage, $"{path} holds {input.Length} bytes, more than --size {bytes}");
            }
            var order = ImageHeader.DefaultOrder;
            if (parse.GetValue(objectSize) is { } os)
            {
                order = ImageHeader.OrderOf(ByteSize.Parse(os, "--object-size")) ?? throw new CliException(ExitCodes.Usage, $"--object-size {os}: a power of two from 4K to 16M");
            }
            await using var cluster = await ConnectAsync(parse, "import", false, ct);
            await RunAsync(() => cluster.Store.CreateAsync(full, bytes, order, ct));
            var output = parse.InvocationConfiguration.Output;
            uint crc = 0;
            long written = 0, total = 0;
            await using (var image = await RunAsync(() => cluster.Store.OpenImageAsync(full, readOnly: false, ct)))
            {
                var chunk = (int)Math.Min(image.Header.ObjectSize, MaxChunk);
                var progress = new Progress("import", bytes);
                var pending = new List<Task>();
                using var slots = new SemaphoreSlim(InFlight);
                for (long pos = 0; pos < bytes; pos += chunk)
                {
                    await slots.WaitAsync(ct);
                    var n = (int)Math.Min(chunk, bytes - pos);
                    var buffer = ArrayPool<byte>.Shared.Rent(n);
                    // Past the input's end reads give nothing: the rest of the image is zeros (holes).
                    var got = await source.ReadAtLeastAsync(buffer.AsMemory(0, n), n, throwOnEndOfStream: false, ct);
                    total += got;
                    buffer.AsSpan(got, n - got).Clear();
                    crc = Crc32C.Compute(buffer.AsSpan(0, n), crc);
                    if (buffer.AsSpan(0, n).IndexOfAnyExcept((byte)0) < 0)
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                        slots.Release();
                        progress.Report(pos + n);
                        continue; // a hole
                    }
                    written += n;
                    var at = pos;
                    pending.Add(WriteChunkAsync());
                    async Task WriteChunkAsync()
                    {
                        try
                        {
                            await image.WriteAsync(at, buffer.AsMemory(0, n), fua: false, ct);
                        }
                        finally
                        {
                            ArrayPool<byte>.Shared.Return(buffer);
                            slots.Release();
                        }
                    }
                    pending.RemoveAll(t => t.IsCompletedSuccessfully);
                    if (pending.Find(t => t.IsFaulted) is { } failed)
                    {
                        await failed;
                    }
                    progress.Report(pos + n);
                }
                await Task.WhenAll(pending);
                if (input is null && source.ReadByte() >= 0)
                {
                    throw new CliException(ExitCodes.InvalidInput, $"standard input holds more than --size {bytes}; the image holds its first {bytes} bytes");
                }
                if (input is not null && total != input.Length)
                {
                    throw new CliException(ExitCodes.Failure, $"{path} changed size while it was imported ({input.Length} bytes, {total} read)");
                }
                // Zeros past the input's end (to the image's size) are part of the checksum above: read back likewise.
                progress.Done();
                var back = await ChecksumAsync(image, bytes, ct);
                if (back != crc)
                {
                    throw new CliException(ExitCodes.Failure, $"image {full} reads back with crc32c {back:x8}, the input had {crc:x8}: the import is damaged; remove it and import again");
                }
            }
            output.WriteLine($"imported {total} bytes into {full} ({ByteSize.Format(bytes)}; {ByteSize.Format(written)} written, the rest zeros left as holes); crc32c {crc:x8} checked");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Export()
    {
        var name = NameArgument();
        var file = new Argument<string>("file") { Description = "The file to write (created or replaced; zero blocks become holes); - for standard output." };
        var command = new Command("export", "Write a cluster image to a file or standard output, checking the data end to end.") { name, file };
        command.SetAction(async (parse, ct) =>
        {
            var full = parse.GetRequiredValue(name);
            var path = parse.GetRequiredValue(file);
            await using var cluster = await ConnectAsync(parse, "export", false, ct);
            await using var image = await RunAsync(() => cluster.Store.OpenImageAsync(full, readOnly: true, ct));
            var bytes = image.Size;
            var chunk = (int)Math.Min(image.Header.ObjectSize, MaxChunk);
            using var handle = path == "-" ? null : File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None);
            var stdout = handle is null ? BinaryStdio.Output : null;
            var progress = new Progress("export", bytes);
            uint crc = 0;
            long written = 0;
            // Reads run ahead, InFlight at a time; they are consumed in order (a pipe is written in order).
            var reads = new Queue<(long Pos, byte[] Buffer, int Length, Task Read)>();
            long next = 0;
            while (next < bytes || reads.Count > 0)
            {
                while (next < bytes && reads.Count < InFlight)
                {
                    var n = (int)Math.Min(chunk, bytes - next);
                    var buffer = ArrayPool<byte>.Shared.Rent(n);
                    reads.Enqueue((next, buffer, n, image.ReadAsync(next, buffer.AsMemory(0, n), ct).AsTask()));
                    next += n;
                }
                var (pos, buf, length, read) = reads.Dequeue();
                try
                {
                    await read;
                    var data = buf.AsMemory(0, length);
                    crc = Crc32C.Compute(data.Span, crc);
                    if (stdout is not null)
                    {
                        await stdout.WriteAsync(data, ct);
                    }
                    else if (data.Span.IndexOfAnyExcept((byte)0) >= 0)
                    {
                        await RandomAccess.WriteAsync(handle!, data, pos, ct);
                        written += length;
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buf);
                }
                progress.Report(pos + length);
            }
            progress.Done();
            if (handle is not null)
            {
                RandomAccess.SetLength(handle, bytes);
                RandomAccess.FlushToDisk(handle);
                var back = await ChecksumFileAsync(handle, bytes, ct);
                if (back != crc)
                {
                    throw new CliException(ExitCodes.Failure, $"{path} reads back with crc32c {back:x8}, the image gave {crc:x8}: the export is damaged");
                }
            }
            else
            {
                await stdout!.FlushAsync(ct);
            }
            parse.InvocationConfiguration.Error.WriteLine($"exported {full} ({bytes} bytes{(handle is null ? "" : $", {ByteSize.Format(written)} written, zero blocks left as holes")}); crc32c {crc:x8}{(handle is null ? "" : " checked")}");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static FileStream OpenRead(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);
        }
        catch (FileNotFoundException)
        {
            throw new CliException(ExitCodes.NotFound, $"{path} does not exist");
        }
        catch (UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.PermissionDenied, $"cannot read {path}");
        }
    }

    /// <summary>The crc32c of an image's first <paramref name="bytes"/>, read in chunks, several at once.</summary>
    private static async Task<uint> ChecksumAsync(ClusterImage image, long bytes, CancellationToken ct)
    {
        var chunk = (int)Math.Min(image.Header.ObjectSize, MaxChunk);
        uint crc = 0;
        var reads = new Queue<(byte[] Buffer, int Length, Task Read)>();
        long next = 0;
        while (next < bytes || reads.Count > 0)
        {
            while (next < bytes && reads.Count < InFlight)
            {
                var n = (int)Math.Min(chunk, bytes - next);
                var buffer = ArrayPool<byte>.Shared.Rent(n);
                reads.Enqueue((buffer, n, image.ReadAsync(next, buffer.AsMemory(0, n), ct).AsTask()));
                next += n;
            }
            var (buf, length, read) = reads.Dequeue();
            await read;
            crc = Crc32C.Compute(buf.AsSpan(0, length), crc);
            ArrayPool<byte>.Shared.Return(buf);
        }
        return crc;
    }

    private static async Task<uint> ChecksumFileAsync(Microsoft.Win32.SafeHandles.SafeFileHandle handle, long bytes, CancellationToken ct)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(MaxChunk);
        try
        {
            uint crc = 0;
            for (long pos = 0; pos < bytes;)
            {
                var n = await RandomAccess.ReadAsync(handle, buffer.AsMemory(0, (int)Math.Min(MaxChunk, bytes - pos)), pos, ct);
                if (n == 0)
                {
                    break;
                }
                crc = Crc32C.Compute(buffer.AsSpan(0, n), crc);
                pos += n;
            }
            return crc;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>A progress line on standard error when it is a terminal (at most a few updates a second).</summary>
    private sealed class Progress(string what, long total)
    {
        private readonly bool _show = !Console.IsErrorRedirected;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _last = -1;

        public void Report(long done)
        {
            if (!_show || _clock.ElapsedMilliseconds - _last < 250)
            {
                return;
            }
            _last = _clock.ElapsedMilliseconds;
            var pct = total == 0 ? 100 : done * 100 / total;
            var bar = new string('#', (int)(pct / 4)).PadRight(25, '.');
            Console.Error.Write($"\r{what} [{bar}] {pct,3}% {ByteSize.Format(done)} of {ByteSize.Format(total)}");
        }

        public void Done()
        {
            if (_show)
            {
                Console.Error.WriteLine($"\r{what} [{new string('#', 25)}] 100% {ByteSize.Format(total)}          ");
            }
        }
    }
}
