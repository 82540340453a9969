namespace Appliance.Wire.Codec;

/// <summary>Bytes from the wire or the disk do not decode: truncated, oversized, a version we cannot read, a bad
/// checksum. The only exception a decoder throws on bad input.</summary>
public sealed class WireFormatException(string message) : Exception(message);
