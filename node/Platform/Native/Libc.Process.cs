using System.Runtime.InteropServices;

namespace Appliance.Platform.Native;

internal static partial class Libc
{
    [LibraryImport(Lib, SetLastError = true)]
    internal static partial int kill(int pid, int sig);
}
