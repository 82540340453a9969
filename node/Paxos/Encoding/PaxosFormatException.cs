namespace Appliance.Paxos.Encoding;

/// <summary>Bytes that are not a valid encoding of this version of the Paxos messages or snapshots.</summary>
public sealed class PaxosFormatException(string message) : Exception(message);
