// The playground page is being written.
