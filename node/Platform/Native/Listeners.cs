using System.Net.Sockets;

namespace Appliance.Platform.Native;

/// <summary>Listening sockets.</summary>
public static class Listeners
{
    private const int SolSocket = 1;
    private const int SoReuseAddr = 2;

    /// <summary>
    /// Lets a listener bind a port that connections of an earlier process still hold in TIME_WAIT (a daemon started
    /// again at once), and nothing more: SO_REUSEADDR alone. .NET's <see cref="SocketOptionName.ReuseAddress"/> also
    /// sets SO_REUSEPORT on Linux, with which a second listener (another daemon, or a second server of this process)
    /// binds the same port and the kernel splits incoming connections between the two.
    /// </summary>
    public static void AllowRebind(Socket socket) => socket.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
}
