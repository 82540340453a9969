namespace Appliance.Platform.Devices;

/// <summary>The argument checks every device applies, so that all implementations enforce one contract.</summary>
internal static unsafe class DeviceChecks
{
    public static void Io(IBlockDevice device, long offset, int length, ReadOnlyMemory<byte> buffer, bool write)
    {
        if (write && device.IsReadOnly)
        {
            throw new InvalidOperationException($"{device.Name} is open read-only");
        }
        Range(device, offset, length);
        using var pin = buffer.Pin();
        if ((nuint)pin.Pointer % (nuint)device.MemoryAlignment != 0)
        {
            throw new ArgumentException(
                $"buffer at 0x{(nuint)pin.Pointer:x} is not aligned to {device.MemoryAlignment} bytes (use AlignedBuffer)");
        }
    }

    public static void Range(IBlockDevice device, long offset, long length)
    {
        if (offset < 0 || length < 0 || offset % device.BlockSize != 0 || length % device.BlockSize != 0)
        {
            throw new ArgumentException(
                $"I/O at offset {offset} length {length} on {device.Name} is not aligned to its block size {device.BlockSize}");
        }
        if (offset > device.Size - length)
        {
            throw new ArgumentOutOfRangeException(
                nameof(offset), $"I/O at offset {offset} length {length} ends past the end of {device.Name} ({device.Size} bytes)");
        }
    }
}
