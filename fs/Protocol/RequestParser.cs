using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Appliance.Fs.Protocol;

/// <summary>
/// Pure parsing of kernel requests: no I/O, no state. Each function takes the bytes left and says how many it
/// consumed, so the dispatcher walks a request's arguments front to back and a malformed request (short, a name
/// without its NUL) is refused with EINVAL instead of being read past its end.
/// </summary>
public static class RequestParser
{
    public static readonly int InHeaderSize = Unsafe.SizeOf<fuse_in_header>();

    /// <summary>
    /// Reads the header of the request at the start of <paramref name="buffer"/> (what one read(2) of /dev/fuse
    /// returned). Returns the request's length (the bytes it consumes), or -1 when the bytes are not one whole,
    /// self-consistent request.
    /// </summary>
    public static int ParseHeader(ReadOnlySpan<byte> buffer, out fuse_in_header header)
    {
        if (buffer.Length < InHeaderSize)
        {
            header = default;
            return -1;
        }
        header = MemoryMarshal.Read<fuse_in_header>(buffer);
        return header.len < InHeaderSize || header.len > buffer.Length ? -1 : (int)header.len;
    }

    /// <summary>Reads a fixed argument structure; returns its size or -1 when the arguments are too short.</summary>
    public static int ReadStruct<T>(ReadOnlySpan<byte> args, out T value)
        where T : unmanaged
    {
        var size = Unsafe.SizeOf<T>();
        if (args.Length < size)
        {
            value = default;
            return -1;
        }
        value = MemoryMarshal.Read<T>(args);
        return size;
    }

    /// <summary>Reads a NUL-terminated name; returns the bytes consumed including the NUL, or -1 when there is no
    /// NUL or the name is empty.</summary>
    public static int ReadName(ReadOnlySpan<byte> args, out string name)
    {
        var end = args.IndexOf((byte)0);
        if (end <= 0)
        {
            name = "";
            return -1;
        }
        name = Encoding.UTF8.GetString(args[..end]);
        return end + 1;
    }
}
